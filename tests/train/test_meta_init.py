"""FSDP2 on the meta device (app/models/meta_init.py) trains exactly like FSDP2 on a fully loaded base.

Two gloo ranks (forked processes, no Ray), tiny Llama (tied embeddings), method full and LoRA: the same fixed
batches through ``make_strategy`` once with ``load_trainable_model`` (every rank loads the whole base, then
``fully_shard``) and once with ``meta_trainable_model`` (nothing materialised until ``to_empty``; each rank reads only
its own rows of the safetensors). Initial weights, the rotary buffers and the per-step losses must be equal.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from tests.train.conftest import fixed_steps, free_port


def _run(rank: int, world: int, port: int, model_dir: str, method: str, out: str) -> None:
    import torch.distributed as dist

    from app.config.sft import SFTConfig
    from app.models.lora import load_trainable_model
    from app.models.meta_init import meta_trainable_model
    from app.train.strategy import make_strategy

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    cfg = SFTConfig.model_validate({
        "method": method, "strategy": {"kind": "fsdp2"}, "lora": {"r": 4, "alpha": 8, "dropout": 0.0},
        "optim": {"lr": 1e-2, "schedule": "constant"}, "train": {"seed": 3},
    })
    result = {}
    for path in ("full_load", "meta"):
        if path == "meta":
            model, fill = meta_trainable_model(model_dir, method, cfg.lora, seed=cfg.train.seed)
            assert all(p.is_meta for p in model.parameters())
        else:
            model, fill = load_trainable_model(model_dir, method, cfg.lora, cfg.quant, seed=cfg.train.seed), None
        strat = make_strategy(model, cfg, 10, fill)
        start = {k: v.tolist() for k, v in strat.full_trainable_state().items()}
        rotary = [b.tolist() for n, b in model.named_buffers() if n.endswith("inv_freq")]
        losses = fixed_steps(strat, rank)
        result[path] = {"start": start, "rotary": rotary, "losses": losses,
                        "local_numel": sum(p.to_local().numel() for p in model.parameters())}
    if rank == 0:
        Path(out).write_text(json.dumps(result))
    dist.destroy_process_group()


@pytest.mark.parametrize("method", ["lora", "full"])
def test_meta_device_fsdp2_trains_like_the_full_load(tiny_model_dir, tmp_path, method):
    import torch.multiprocessing as mp

    out = tmp_path / "result.json"
    mp.start_processes(_run, args=(2, free_port(), str(tiny_model_dir), method, str(out)), nprocs=2, start_method="fork")
    got = json.loads(out.read_text())
    full, meta = got["full_load"], got["meta"]
    assert meta["start"].keys() == full["start"].keys() and meta["start"]  # same trainable tensors, same values
    for name in full["start"]:
        assert meta["start"][name] == full["start"][name], name
    assert meta["rotary"] == full["rotary"] and full["rotary"]  # non-persistent buffers recomputed, not garbage
    assert meta["local_numel"] == full["local_numel"]  # the same shards per rank
    for (loss_f, norm_f), (loss_m, norm_m) in zip(full["losses"], meta["losses"]):
        assert abs(loss_f - loss_m) <= 1e-6 and abs(norm_f - norm_m) <= 1e-6
    assert full["losses"][0] != full["losses"][-1]  # the steps moved the weights
