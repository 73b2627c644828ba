"""Per-rank peak RSS of building a ~1B-parameter Llama (random init, no download) on 2 CPU ranks (gloo):
a plain full build on every rank vs FSDP2 on the meta device vs DeepSpeed ZeRO-3 ``zero.Init``.

    python benchmarks/init_memory.py [--dtype bfloat16] [--modes full fsdp2_meta zero3_init]
    # writes benchmarks/results/init_memory.json (goal: sharded peak <= 0.6 x the full build, per rank)

Each (mode, rank) is a fresh process, so ``ru_maxrss`` is that build's peak. ``baseline`` is the RSS after imports
(torch, transformers, deepspeed) before any weight exists; the planner's figure for the same model (weights only,
per rank) is printed next to the measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

LLAMA_1B = dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
                num_key_value_heads=8, vocab_size=32000, max_position_embeddings=2048, tie_word_embeddings=False)
SMOKE = dict(LLAMA_1B, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)


def llama_shape() -> dict:
    return SMOKE if os.environ.get("INIT_MEMORY_SMOKE") else LLAMA_1B


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def build(mode: str, dtype_name: str):
    """Build the model per ``mode`` in this (already distributed) process; returns (n_params_total, n_local_elements)."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    dtype = getattr(torch, dtype_name)
    config = LlamaConfig(**llama_shape())
    if mode == "full":
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
        n = sum(p.numel() for p in model.parameters())
        return n, n
    if mode == "fsdp2_meta":
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config, dtype=dtype)
        mesh = init_device_mesh("cpu", (torch.distributed.get_world_size(),))
        for layer in model.model.layers:
            fully_shard(layer, mesh=mesh)
        fully_shard(model, mesh=mesh)
        model.to_empty(device="cpu")  # only this rank's shards get storage
        with torch.no_grad():  # init the local shards in slices: no full-size fp32 temporaries
            for name, p in model.named_parameters():
                flat = p.to_local().view(-1)
                for i in range(0, flat.numel(), 1 << 20):
                    chunk = flat[i : i + (1 << 20)]
                    chunk.fill_(1.0) if name.endswith("norm.weight") else chunk.normal_(0.0, config.initializer_range)
        n = sum(p.numel() for p in model.parameters())
        return n, sum(p.to_local().numel() for p in model.parameters())
    if mode == "zero3_init":
        import deepspeed

        ds = {"train_micro_batch_size_per_gpu": 1, "zero_optimization": {"stage": 3}, "bf16": {"enabled": dtype_name == "bfloat16"}}
        with deepspeed.zero.Init(config_dict_or_path=ds, dtype=dtype, remote_device="cpu"):
            model = AutoModelForCausalLM.from_config(config, dtype=dtype)
        n = sum(p.ds_numel for p in model.parameters())
        return n, sum(p.ds_tensor.numel() for p in model.parameters())
    raise ValueError(mode)


def worker(mode: str, rank: int, world: int, port: int, dtype: str, out: Path) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world))
    import deepspeed  # every mode imports the same libraries, so the baselines match
    import torch
    import torch.distributed as dist
    import transformers  # noqa: F401

    if mode == "zero3_init":
        deepspeed.init_distributed(dist_backend="gloo")
    else:
        dist.init_process_group("gloo")
    torch.set_num_threads(1)
    baseline = rss_mib()
    t0 = time.perf_counter()
    n_total, n_local = build(mode, dtype)
    seconds = time.perf_counter() - t0
    dist.barrier()
    out.write_text(json.dumps({"mode": mode, "rank": rank, "baseline_mib": baseline, "peak_mib": rss_mib(),
                               "params": n_total, "local_elements": n_local, "seconds": round(seconds, 1)}))
    dist.destroy_process_group()


def run_mode(mode: str, dtype: str, port: int, world: int = 2) -> list[dict]:
    import subprocess
    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix="init-mem-"))
    procs = [subprocess.Popen([sys.executable, __file__, "--worker", mode, str(r), str(world), str(port), dtype, str(tmp / f"{r}.json")])
             for r in range(world)]
    codes = [p.wait() for p in procs]
    if any(codes):
        return [{"mode": mode, "error": f"exit codes {codes}"}]
    return [json.loads((tmp / f"{r}.json").read_text()) for r in range(world)]


def planner_weights_gib(n_params: int, dtype: str, world: int) -> dict[str, float]:
    """Weights per rank as the capacity planner's memory model counts them (app/core/memory.py, what `rayalign plan`
    uses): frozen weights at the dtype's bytes/param, replicated (stage 0) or partitioned (stage 3) over ``world``."""
    from app.core.memory import model_state_bytes

    per = 2.0 if dtype in ("bfloat16", "float16") else 4.0
    full = model_state_bytes(0, n_params, stage=0, n_gpus=world, frozen_bytes_per_param=per).total / 2**30
    sharded = model_state_bytes(0, n_params, stage=3, n_gpus=world, frozen_bytes_per_param=per).total / 2**30
    return {"full_gib": round(full, 3), "sharded_gib": round(sharded, 3), "ratio": round(sharded / full, 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    ap.add_argument("--modes", nargs="+", default=["full", "fsdp2_meta", "zero3_init"])
    args = ap.parse_args()
    from app.config.paths import rayalign_home

    os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(rayalign_home() / "torch_extensions"))
    results = {}
    for i, mode in enumerate(args.modes):
        results[mode] = run_mode(mode, args.dtype, 29600 + i)
        print(mode, json.dumps(results[mode]), flush=True)
    full = results.get("full", [])
    summary = {}
    if full and "peak_mib" in full[0]:
        summary["planner_weights_per_rank"] = planner_weights_gib(full[0]["params"], args.dtype, 2)
        for mode, ranks in results.items():
            if mode != "full" and ranks and "peak_mib" in ranks[0]:
                summary[f"{mode}_vs_full_peak"] = [round(r["peak_mib"] / f["peak_mib"], 3) for r, f in zip(ranks, full)]
                summary[f"{mode}_vs_full_weights_above_baseline"] = [
                    round((r["peak_mib"] - r["baseline_mib"]) / (f["peak_mib"] - f["baseline_mib"]), 3) for r, f in zip(ranks, full)]
    print(json.dumps(summary, indent=1))
    out = ROOT / "benchmarks" / "results" / "init_memory.json"
    if os.environ.get("INIT_MEMORY_SMOKE"):
        return  # a code-path check, not a measurement
    out.write_text(json.dumps({"model": LLAMA_1B, "dtype": args.dtype, "ranks": 2, "results": results, "summary": summary,
                               "command": "python benchmarks/init_memory.py " + " ".join(sys.argv[1:])}, indent=2))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        mode, rank, world, port, dtype, out = sys.argv[2:8]
        worker(mode, int(rank), int(world), int(port), dtype, Path(out))
    else:
        main()
