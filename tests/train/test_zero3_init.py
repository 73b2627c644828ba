"""DeepSpeed ZeRO-3 built partitioned (app/models/meta_init.py ``partitioned_trainable_model``) trains exactly like
ZeRO-3 loaded by transformers (``from_pretrained`` under ``HfDeepSpeedConfig``, which gathers each module to load it).

Two gloo ranks (forked processes, no Ray), tiny Llama (tied embeddings, odd-sized tensors, so partitions cut rows
and get padding), methods full and LoRA in one run: the gathered initial trainable tensors, each rank's partition
sizes and 3 steps of losses and grad norms through ``make_strategy`` must be equal; no parameter may be left as
zero.Init's empty placeholder. The process also builds with ``skip_unused_imports`` / ``import_deepspeed`` first,
as a training worker does.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from tests.train.conftest import fixed_steps, free_port


def _run(rank: int, world: int, port: int, model_dir: str, out: str) -> None:
    import torch.distributed as dist

    from app.config.sft import SFTConfig
    from app.models.lora import load_trainable_model
    from app.models.meta_init import partitioned_trainable_model
    from app.train.strategy import builds_partitioned, deepspeed_config, large_model_init, make_strategy

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    result: dict = {}
    for method in ("lora", "full"):
        cfg = SFTConfig.model_validate({
            "method": method, "strategy": {"kind": "deepspeed", "zero_stage": 3},
            "lora": {"r": 4, "alpha": 8, "dropout": 0.0}, "optim": {"lr": 1e-2, "schedule": "constant"},
            "train": {"seed": 3}, "scaling": {"num_workers": world},
        })
        assert builds_partitioned(cfg)
        for path in ("from_pretrained", "partitioned"):
            hf_ds = large_model_init(cfg)  # noqa: F841  (alive while building, as in the loops)
            if path == "partitioned":
                model = partitioned_trainable_model(model_dir, method, cfg.lora, deepspeed_config(cfg), seed=cfg.train.seed)
            else:
                model = load_trainable_model(model_dir, method, cfg.lora, cfg.quant, seed=cfg.train.seed)
            parts = {n: p.ds_tensor.numel() for n, p in model.named_parameters() if hasattr(p, "ds_tensor")}
            strat = make_strategy(model, cfg, 10)
            start = {k: v.float().tolist() for k, v in strat.full_trainable_state().items()}
            losses = fixed_steps(strat, rank)
            result[f"{method}/{path}"] = {"start": start, "parts": parts, "losses": losses}
            del hf_ds
    if rank == 1:
        Path(out).write_text(json.dumps(result))
    dist.destroy_process_group()


def test_partitioned_zero3_trains_like_from_pretrained(tiny_model_dir, tmp_path):
    import torch.multiprocessing as mp

    out = tmp_path / "result.json"
    mp.start_processes(_run, args=(2, free_port(), str(tiny_model_dir), str(out)), nprocs=2, start_method="fork")
    got = json.loads(out.read_text())
    for method in ("lora", "full"):
        ref, new = got[f"{method}/from_pretrained"], got[f"{method}/partitioned"]
        assert new["start"].keys() == ref["start"].keys() and new["start"], method
        for name in ref["start"]:
            assert new["start"][name] == ref["start"][name], (method, name)
        assert new["parts"] == ref["parts"] and ref["parts"], method  # the same partitions on rank 1
        for (loss_r, norm_r), (loss_n, norm_n) in zip(ref["losses"], new["losses"]):
            assert abs(loss_r - loss_n) <= 1e-6 and abs(norm_r - norm_n) <= 1e-6, (method, ref["losses"], new["losses"])
        assert ref["losses"][0] != ref["losses"][-1], method  # the steps moved the weights
