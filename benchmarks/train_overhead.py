"""Ray Train overhead: bare PyTorch loop vs rayalign's loop on Ray Train (1 worker x 2 CPUs), same everything.

Same model (a ~4.4M-parameter Llama with LoRA on all linear layers... see MODEL), same packed rows, same batch,
same core loss, same AdamW, same threads (2). Steady-state tokens/s skips the first WARMUP steps; Ray's start-up
(cluster, worker group, model load, data) is reported separately.

    python benchmarks/train_overhead.py            # writes benchmarks/results/train_overhead.json
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
# Ray starts workers at niceness 15 by default; a benchmark must not hand the bare baseline a priority edge.
os.environ.setdefault("RAY_worker_niceness", "0")

from app.config.sft import SFTConfig  # noqa: E402
from app.core.losses import causal_lm_loss  # noqa: E402
from app.models.lora import load_trainable_model  # noqa: E402
from app.models.tiny import build_tiny_model  # noqa: E402
from app.train.batches import PackedShard, collate_packed, shard_rows  # noqa: E402
from app.train.strategy import make_strategy  # noqa: E402
from app.data.synthetic import write_packed_artifact  # noqa: E402

STEPS, WARMUP, SEQ = 30, 5, 512
MODEL = dict(hidden_size=256, intermediate_size=704, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=4)


def config(artifact: Path, model_dir: Path, storage: Path) -> SFTConfig:
    return SFTConfig.model_validate({
        "model": {"source": str(model_dir)},
        "data": {"artifact": str(artifact)},
        "method": "full",
        "optim": {"lr": 1e-4, "schedule": "constant"},
        "train": {"max_steps": STEPS, "micro_batch_size": 1, "grad_accum": 1, "log_every": 10},
        "checkpoint": {"every_steps": 10**6, "keep": 1},
        "scaling": {"num_workers": 1, "cpus_per_worker": 2, "max_failures": 0},
        "tracking": {"enabled": False},
        "ray": {"storage_path": str(storage), "run_name": f"overhead-{int(time.time())}", "num_cpus": 2},
    })


def bare_loop(cfg: SFTConfig, artifact: Path, model_dir: Path) -> dict:
    import pyarrow.parquet as pq

    torch.set_num_threads(2)
    torch.manual_seed(0)
    model = load_trainable_model(model_dir, cfg.method, cfg.lora, cfg.quant)
    rows, total = shard_rows(pq.read_table(artifact / "train").to_pylist(), 0, 1)
    shard = PackedShard(rows, total, 1, 1, 1, cfg.train.seed)
    strat = make_strategy(model, cfg, STEPS)
    starts, tokens = [], []
    for step in range(STEPS):
        starts.append(time.time())
        batch = collate_packed(shard.step_rows(0, step % shard.steps_per_epoch)[0], 0)
        logits = strat.model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits
        loss_sum, n = causal_lm_loss(logits, batch["labels"], batch["position_ids"])
        strat.backward(loss_sum / n, last=True)
        strat.step()
        loss_sum.item()
        tokens.append(int(batch["n_real_tokens"]))
    starts.append(time.time())
    return steady_state(starts, tokens)


def steady_state(starts: list[float], tokens: list[int]) -> dict:
    span = starts[-1] - starts[WARMUP]
    return {"tokens_per_s": sum(tokens[WARMUP:]) / span, "seconds_per_step": span / (len(tokens) - WARMUP)}


def ray_loop(cfg: SFTConfig) -> dict:
    from app.train.run import run_sft

    t0 = time.time()
    out = run_sft(cfg)
    end = time.time()
    hist = out.history
    starts = [h["wall_start"] for h in hist] + [end]
    # the last step also writes the final checkpoint + adapter; measure steady state over the steps before it
    res = steady_state(starts[:-1], [int(h["tokens"]) for h in hist][:-1])
    res["startup_s"] = hist[0]["wall_start"] - t0
    res["total_s"] = end - t0
    return res


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="rayalign-overhead-"))
    artifact = write_packed_artifact(work / "artifact", n_rows=STEPS + 5, max_length=SEQ, vocab=500)
    model_dir = build_tiny_model(work / "model", **MODEL)
    cfg = config(artifact, model_dir, work / "runs")
    n_params = sum(p.numel() for p in load_trainable_model(model_dir, "full", cfg.lora, cfg.quant).parameters())
    bare = bare_loop(cfg, artifact, model_dir)
    ray_res = ray_loop(cfg)
    overhead = 1.0 - ray_res["tokens_per_s"] / bare["tokens_per_s"]
    result = {
        "model_params": n_params, "seq_len": SEQ, "steps": STEPS, "warmup_steps": WARMUP, "threads": 2,
        "bare_pytorch": bare, "ray_train_1x2cpu": ray_res,
        "throughput_ratio_ray_over_bare": ray_res["tokens_per_s"] / bare["tokens_per_s"],
        "steady_state_overhead": overhead,
    }
    print(json.dumps(result, indent=2))
    print(f"bare {bare['tokens_per_s']:.0f} tok/s | Ray Train {ray_res['tokens_per_s']:.0f} tok/s | "
          f"overhead {overhead * 100:.1f}% | Ray start-up {ray_res['startup_s']:.1f}s")
    out = ROOT / "benchmarks" / "results" / "train_overhead.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
