"""Per-rank peak RSS of building a ~1B-parameter Llama (random init, no download) on 2 CPU ranks (gloo): FSDP2 on the meta device vs a plain full build, and DeepSpeed ZeRO-3 ``zero.Init`` vs a plain full build, in float32 (the training default, ``model.dtype``) and bfloat16.

    python benchmarks/init_memory.py [--dtypes float32 bfloat16] [--modes full fsdp2_meta full_ds zero3_init]
    # writes benchmarks/results/init_memory.json (goal: sharded peak <= 0.6 x the full build's peak, per rank)

Each (dtype, mode, rank) is a fresh process, so its ``VmHWM`` is that build's peak. Each mode imports what its
training path imports and nothing else, all before ``baseline`` is read, in the same way a training worker does
(``app/models/lean_imports.py``: sklearn made unimportable first, DeepSpeed imported without its autotuner's
MLflow): torch + transformers' Llama (accelerate, torch._dynamo: ~450 MiB), plus ``fully_shard`` for FSDP2, plus
DeepSpeed (+~25 MiB) for ZeRO-3. A rank that trains with FSDP2 never imports DeepSpeed, so FSDP2 is compared with
``full`` (a full build in a torch + transformers process); a ZeRO-3 rank always has DeepSpeed loaded, so ZeRO-3 is
compared with ``full_ds`` (a full build in a process that imported DeepSpeed and initialised its comm). The fixed
import cost sits in both numerator and denominator, so for a 1.1 B model it, not the weights, keeps the ratio
above 0.5 (``*_above_baseline`` is the ratio without it). Per rank the result also splits the peak into
``baseline`` (imports), ``local_mib`` (the weights this rank keeps) and ``transient_mib`` (the rest).

The sharded modes build as training does and only the values differ (random here, the checkpoint's rows in
training): ``fsdp2_meta`` is ``meta_trainable_model``'s meta-device build, ``fully_shard``, ``to_empty``;
``zero3_init`` is ``partitioned_empty_model`` (``app/models/meta_init.py``: ``zero.Init`` + ``no_init_weights``,
without zero.Init's broadcast of rank 0's values, which wrote a full copy of every tensor on rank 1 and kept the
whole output head resident). Each then initialises its local shards / partitions in 1 Mi-element slices, so no
full-size tensor ever exists. The capacity planner's figures for the same config (what ``rayalign plan`` counts
and sizes: weights per rank, replicated vs ZeRO-3-partitioned, and the largest single tensor) are next to it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

LLAMA_1B = dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
                num_key_value_heads=8, vocab_size=32000, max_position_embeddings=2048, tie_word_embeddings=False)
SMOKE = dict(LLAMA_1B, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)
MODES = ("full", "fsdp2_meta", "full_ds", "zero3_init")
BASELINE_OF = {"fsdp2_meta": "full", "zero3_init": "full_ds"}  # which full build each sharded mode is compared with


def llama_shape() -> dict:
    return SMOKE if os.environ.get("INIT_MEMORY_SMOKE") else LLAMA_1B


def rss_mib() -> float:
    """This process's peak RSS so far, MiB: ``VmHWM`` of its own address space. Not ``ru_maxrss``: Linux keeps
    that across ``execve``, so a rank started from a parent that had grown larger reports the parent's peak."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024  # kB


def build(mode: str, dtype_name: str):
    """Build the model per ``mode`` in this (already distributed) process; returns (n_params_total, local bytes)."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    dtype = getattr(torch, dtype_name)
    config = LlamaConfig(**llama_shape())
    if mode in ("full", "full_ds"):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
        n = sum(p.numel() for p in model.parameters())
        return n, sum(p.numel() * p.element_size() for p in model.parameters())
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
        return n, sum(p.to_local().numel() * p.element_size() for p in model.parameters())
    if mode == "zero3_init":
        from app.models.meta_init import partitioned_empty_model

        ds = {"train_micro_batch_size_per_gpu": 1, "zero_optimization": {"stage": 3}, "bf16": {"enabled": dtype_name == "bfloat16"}}
        # the weights' dtype comes from the DeepSpeed config, as in training. Not zero.Init(dtype=): DeepSpeed 0.19's
        # Init._set_dtype parses `dtype or fp16 if fp16_supported else bf16 ...` so that on a CPU accelerator (no
        # fp16) any dtype given becomes bfloat16; a float32 build would silently be bf16.
        model = partitioned_empty_model(config, ds)  # the training path's build (partitioned_trainable_model)
        with torch.no_grad():  # random values into each partition in slices (training: the checkpoint's rows)
            for name, p in model.named_parameters():
                flat = p.ds_tensor.view(-1)
                for i in range(0, flat.numel(), 1 << 20):
                    chunk = flat[i : i + (1 << 20)]
                    chunk.fill_(1.0) if name.endswith("norm.weight") else chunk.normal_(0.0, config.initializer_range)
        assert {p.ds_tensor.dtype for p in model.parameters()} == {dtype}, "zero.Init built another dtype"
        n = sum(p.ds_numel for p in model.parameters())
        return n, sum(p.ds_tensor.numel() * p.ds_tensor.element_size() for p in model.parameters())
    raise ValueError(mode)


def worker(mode: str, rank: int, world: int, port: int, dtype: str, out: Path) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world))
    # what this mode's training path imports, all before the baseline is read, as a training worker imports it
    from app.models.lean_imports import import_deepspeed, skip_unused_imports

    skip_unused_imports()  # WorkerSession does this first: transformers then skips sklearn (~100 MiB)
    import torch
    import torch.distributed as dist
    from transformers import AutoModelForCausalLM, LlamaConfig  # noqa: F401  (~450 MiB: accelerate, dynamo)
    from transformers.models.llama import modeling_llama  # noqa: F401  (what from_config loads: ~40 MiB)

    if mode in ("full_ds", "zero3_init"):
        import_deepspeed().init_distributed(dist_backend="gloo")  # without the autotuner's MLflow import
    else:
        from torch.distributed.device_mesh import init_device_mesh  # noqa: F401
        from torch.distributed.fsdp import fully_shard  # noqa: F401

        dist.init_process_group("gloo")
    torch.set_num_threads(1)
    baseline = rss_mib()
    t0 = time.perf_counter()
    n_total, local_bytes = build(mode, dtype)
    seconds = time.perf_counter() - t0
    dist.barrier()
    peak, local = rss_mib(), local_bytes / 2**20
    out.write_text(json.dumps({"mode": mode, "rank": rank, "baseline_mib": round(baseline, 1), "peak_mib": round(peak, 1),
                               "local_mib": round(local, 1), "transient_mib": round(peak - baseline - local, 1),
                               "params": n_total, "seconds": round(seconds, 1)}))
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


def planner_weights_gib(dtype: str, world: int) -> dict[str, float]:
    """What `rayalign plan` computes for this config (app/plan/model_stats.py counts it on the meta device,
    app/core/memory.py sizes it): weights per rank at the dtype's bytes/param, replicated (stage 0) or partitioned
    (stage 3) over ``world``, and its largest single-module tensor, the one ``zero.Init`` holds whole while it
    partitions it (the planner's ZeRO-3 gather term)."""
    from app.core.memory import model_state_bytes
    from app.plan.model_stats import count_model_params, read_hf_config

    stats = count_model_params(read_hf_config({"model_type": "llama", **llama_shape()}, None), "full")
    per = 2.0 if dtype in ("bfloat16", "float16") else 4.0
    full = model_state_bytes(0, stats.total_params, stage=0, n_gpus=world, frozen_bytes_per_param=per).total / 2**30
    sharded = model_state_bytes(0, stats.total_params, stage=3, n_gpus=world, frozen_bytes_per_param=per).total / 2**30
    return {"params": stats.total_params, "full_gib": round(full, 3), "sharded_gib": round(sharded, 3),
            "ratio": round(sharded / full, 3), "largest_tensor_mib": round(stats.largest_layer_params * per / 2**20, 1)}


def summarise(results: dict[str, list[dict]], dtype: str) -> dict:
    """Per sharded mode: its peak / its full build's peak per rank (the goal), and the same above each baseline."""
    summary: dict = {}
    for mode, full_mode in BASELINE_OF.items():
        ranks, full = results.get(mode, []), results.get(full_mode, [])
        if not (ranks and full and "peak_mib" in ranks[0] and "peak_mib" in full[0]):
            continue
        summary.setdefault("planner_weights_per_rank", planner_weights_gib(dtype, len(full)))
        ratios = [round(r["peak_mib"] / f["peak_mib"], 3) for r, f in zip(ranks, full)]
        summary[f"{mode}_vs_{full_mode}_peak"] = ratios
        summary[f"{mode}_vs_{full_mode}_above_baseline"] = [
            round((r["peak_mib"] - r["baseline_mib"]) / (f["peak_mib"] - f["baseline_mib"]), 3) for r, f in zip(ranks, full)]
        summary[f"{mode}_meets_0.6"] = max(ratios) <= 0.6
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"], choices=["float32", "bfloat16"])
    ap.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    args = ap.parse_args()
    from app.config.paths import rayalign_home

    os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(rayalign_home() / "torch_extensions"))
    path = ROOT / "benchmarks" / "results" / "init_memory.json"
    previous = json.loads(path.read_text()) if path.is_file() else {}
    out: dict = {"model": LLAMA_1B, "ranks": 2, "baseline_of": BASELINE_OF}
    commands = (previous.get("commands") or [previous.get("command")]) if previous.get("model") == LLAMA_1B else []
    port = 29600
    for dtype in ("float32", "bfloat16"):  # a dtype not re-run keeps its earlier measurement (same model)
        if dtype not in args.dtypes and previous.get("model") == LLAMA_1B and dtype in previous:
            out[dtype] = previous[dtype]
    for dtype in args.dtypes:
        # modes not re-run keep their earlier measurement (same model); each mode's ranks ran together
        results = {m: r for m, r in previous.get(dtype, {}).get("results", {}).items() if previous.get("model") == LLAMA_1B}
        for mode in args.modes:
            port += 1
            results[mode] = run_mode(mode, dtype, port)
            print(dtype, mode, json.dumps(results[mode]), flush=True)
        out[dtype] = {"results": {m: results[m] for m in MODES if m in results}, "summary": summarise(results, dtype)}
        print(dtype, json.dumps(out[dtype]["summary"], indent=1), flush=True)
    if os.environ.get("INIT_MEMORY_SMOKE"):
        return  # a code-path check, not a measurement
    out["commands"] = commands + ["python benchmarks/init_memory.py " + " ".join(sys.argv[1:])]
    path.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        mode, rank, world, port, dtype, out = sys.argv[2:8]
        worker(mode, int(rank), int(world), int(port), dtype, Path(out))
    else:
        main()
