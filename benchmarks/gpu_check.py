"""GPU check: run, once, on one CUDA GPU, what this code has never run on CUDA; ≤ 8 minutes in all.

    python benchmarks/gpu_check.py                  # on a GPU node: writes benchmarks/results/gpu_check.json
    python benchmarks/gpu_check.py --dry-run        # anywhere (CI): builds and validates every config, starts nothing
    python benchmarks/gpu_check.py --only sft_lora_bf16,ppo_grpo_vllm --budget-s 300

Sections, in this order (each in its own child process with its own time limit, so one crash or hang is recorded and
the rest still run; the whole run stops starting sections when the budget is spent):
  prepare            GSM8K subset -> packed SFT artifact through the real ingest pipeline (configs/ingest/…gsm8k_sft)
  sft_lora_bf16      configs/sft/smollm2_lora_gsm8k_gpu.yaml (what the launch files run) on Ray Train, 1 GPU worker:
                     steady-state tokens/s and MFU against the GPU's dense bf16 peak (app/plan/gpus.py)
  qlora_step         the same with method=qlora (bitsandbytes NF4 on CUDA), a few steps
  fsdp2_step         the same with strategy.kind=fsdp2 (fully_shard on a 1-GPU CUDA mesh), a few steps
  dpo_step           the DPO job (reference precompute, then policy steps) on one GPU worker, bf16, synthetic pairs
  serve_multilora    benchmarks/serve_multilora.py with the CUDA vLLM (vllm.dtype=bfloat16): 1 vs 4 mixed adapters
  ppo_grpo_vllm      configs/ppo/smollm2_gsm8k_grpo_vllm_gpu.yaml for a few iterations (vLLM rollouts + LoRA sync)

Each section reports {"status": "ok" | "failed" | "timeout" | "skipped", "wall_s", ...numbers or the error's tail}.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

RESULTS = ROOT / "benchmarks" / "results" / "gpu_check.json"
SFT_GPU = ROOT / "configs" / "sft" / "smollm2_lora_gsm8k_gpu.yaml"
INGEST = ROOT / "configs" / "ingest" / "smollm2_gsm8k_sft.yaml"
DPO = ROOT / "configs" / "dpo" / "smollm2_hh_lora.yaml"
PPO_GPU = ROOT / "configs" / "ppo" / "smollm2_gsm8k_grpo_vllm_gpu.yaml"
SERVE = ROOT / "configs" / "serve" / "smollm2_vllm.yaml"
GSM8K_ROWS = 1500  # enough packed 512-token rows for 60 steps of 8
# (section, time limit in seconds); the order is the priority order under the overall budget
SECTIONS = [("prepare", 60), ("sft_lora_bf16", 90), ("qlora_step", 50), ("fsdp2_step", 50), ("dpo_step", 40),
            ("serve_multilora", 120), ("ppo_grpo_vllm", 120)]


# ---------------------------------------------------------------- configs (built in dry runs and real runs alike)
def sft_overrides(work: Path, name: str, peak_flops: float, extra: list[str]) -> list[str]:
    return [f"data.artifact={work / 'datasets' / 'gsm8k-sft'}", f"ray.storage_path={work / 'runs'}",
            f"ray.run_name=gpu-check-{name}", f"output.peak_flops={peak_flops}", "tracking.enabled=false",
            "scaling.num_workers=1", "scaling.cpus_per_worker=4", *extra]


SFT_VARIANTS = {
    "sft_lora_bf16": ["train.max_steps=60", "checkpoint.every_steps=30", "train.log_every=1"],
    "qlora_step": ["method=qlora", "train.max_steps=6", "checkpoint.every_steps=3", "train.log_every=1"],
    "fsdp2_step": ["strategy.kind=fsdp2", "train.max_steps=6", "checkpoint.every_steps=3", "train.log_every=1"],
}


def ingest_overrides(work: Path) -> list[str]:
    from app.config.paths import shared_dir

    subset = work / "gsm8k_subset.jsonl"
    test = Path(shared_dir() or ROOT.parent / "shared") / "data" / "gsm8k" / "test.jsonl"  # not cwd-relative
    return [f"sources=[{{path: {subset}, input_format: gsm8k}}]", f"output_dir={work / 'datasets'}",
            f"contamination.benchmarks=[{test}]",
            "validation_fraction=0.0", "dedup.near=false", "ray.address=local"]


def ppo_overrides(work: Path) -> list[str]:
    return ["run.iterations=3", "run.prompts_per_iteration=8", "run.checkpoint_every=2", "rollout.max_new_tokens=128",
            f"run.output_dir={work / 'ppo'}", "tracking.enabled=false", "ray.address=local"]


SERVE_ARGS = ["--requests", "64", "--concurrency", "16", "--max-tokens", "64", "--skip-hf", "--set", "vllm.dtype=bfloat16"]


def build_configs(work: Path, peak_flops: float) -> dict:
    """Every config the sections run, loaded and validated (raises ConfigError on the first bad one)."""
    from app.config.dpo import DPOConfig
    from app.config.ingest import IngestConfig
    from app.config.loader import load_config
    from app.config.ppo import PPOConfig
    from app.config.serve import ServeConfig
    from app.config.sft import SFTConfig

    built = {"prepare": load_config(INGEST, IngestConfig, ingest_overrides(work))}
    for name, extra in SFT_VARIANTS.items():
        built[name] = load_config(SFT_GPU, SFTConfig, sft_overrides(work, name, peak_flops, extra))
        assert built[name].scaling.use_gpu and built[name].use_bf16, f"{name}: not a GPU bf16 config"
        if os.environ.get("GPU_CHECK_CPU_SMOKE"):  # exercise this script's own plumbing on a CPU box (2 steps, fp32)
            built[name] = load_config(SFT_GPU, SFTConfig, sft_overrides(work, name, peak_flops, extra) + [
                "scaling.use_gpu=false", "train.bf16=false", "model.dtype=float32", "train.max_steps=2",
                "checkpoint.every_steps=1", "scaling.cpus_per_worker=2", "train.micro_batch_size=1"])
    built["dpo_step"] = load_config(DPO, DPOConfig, [
        f"data.artifact={work / 'datasets' / 'preference'}", "scaling.use_gpu=true", "scaling.num_workers=1",
        "model.dtype=bfloat16", "train.max_steps=8", "train.log_every=1", "checkpoint.every_steps=4",
        f"ray.storage_path={work / 'runs'}", "ray.run_name=gpu-check-dpo", "tracking.enabled=false"]
        + (["scaling.use_gpu=false", "model.dtype=float32", "train.max_steps=2"] if os.environ.get("GPU_CHECK_CPU_SMOKE") else []))
    built["serve_multilora"] = load_config(SERVE, ServeConfig, ["vllm.dtype=bfloat16", "vllm.max_loras=4", "vllm.max_lora_rank=8"])
    built["ppo_grpo_vllm"] = load_config(PPO_GPU, PPOConfig, ppo_overrides(work))
    assert built["ppo_grpo_vllm"].rollout.backend == "vllm" and built["ppo_grpo_vllm"].placement.gpus_per_role > 0
    return built


# ---------------------------------------------------------------- the GPU
def gpu_for_device_name(device_name: str) -> tuple[str, float]:
    """(catalog name, dense bf16 FLOP/s) for a CUDA device name such as 'NVIDIA A100-SXM4-80GB' (app/plan/gpus.py)."""
    from app.plan.gpus import CATALOG

    name = device_name.upper()
    order = ["H200", "H100", "A100-80GB", "A100", "L40S", "A10G", "L4"]
    for key in order:
        want = key.replace("-80GB", "")
        if want in name and (key != "A100-80GB" or "80GB" in name):
            return key, CATALOG[key].bf16_tflops * 1e12
    return device_name, float("nan")


# ---------------------------------------------------------------- sections (run in a child process)
def run_prepare(work: Path, built: dict) -> dict:
    import ray

    from app.config.paths import shared_dir
    from app.data.pipeline import run_ingest
    from app.launch.runtime import init_ray

    src = Path(shared_dir()) / "data" / "gsm8k" / "train.jsonl"
    with open(src, encoding="utf-8") as f, open(work / "gsm8k_subset.jsonl", "w", encoding="utf-8") as out:
        for i, line in zip(range(GSM8K_ROWS), f):
            out.write(line)
    init_ray(built["prepare"].ray)
    try:
        artifact = run_ingest(built["prepare"], out_dir=work / "datasets", progress=False)
    finally:
        ray.shutdown()
    return {"artifact": str(artifact.path), "rows": artifact.manifest.get("splits"), "tokens": artifact.manifest.get("tokens")}


def run_sft_variant(name: str, built: dict) -> dict:
    import statistics

    from app.launch.run import run_sft

    t0 = time.perf_counter()
    out = run_sft(built[name])
    hist = out.history
    steady = hist[len(hist) // 5:] or hist  # the first steps include CUDA/cuBLAS warm-up
    return {
        "status_run": out.status, "steps": out.step, "fit_s": round(time.perf_counter() - t0, 1),
        "loss_first": hist[0]["loss"] if hist else None, "loss_last": hist[-1]["loss"] if hist else None,
        "tokens_per_s": round(statistics.median(h["tokens_per_s"] for h in steady), 1) if hist else None,
        "mfu": round(statistics.median(h["mfu"] for h in steady), 4) if hist else None,
        "checkpoint": out.checkpoint_path, "ok": out.status == "completed" and bool(hist) and hist[-1]["loss"] < hist[0]["loss"] + 1.0,
    }


def run_dpo(work: Path, built: dict) -> dict:
    """The DPO job on one GPU worker: reference log-probs precomputed, then a few policy steps (bf16, NCCL)."""
    import statistics

    from app.data.synthetic import write_preference_artifact
    from app.launch.preference import fit_preference
    from app.models.loader import load_tokenizer

    cfg = built["dpo_step"]
    write_preference_artifact(Path(cfg.data.artifact), load_tokenizer(cfg.model), n_train=96, n_val=16,
                              model_source=cfg.model.source)
    t0 = time.perf_counter()
    out = fit_preference("dpo", cfg)
    hist = out["history"]
    starts = [h["wall_start"] for h in hist if "wall_start" in h]
    return {"status_run": out["status"], "steps": out["step"], "fit_s": round(time.perf_counter() - t0, 1),
            "step_s": round(statistics.median(b - a for a, b in zip(starts, starts[1:])), 3) if len(starts) > 2 else None,
            "loss_first": hist[0].get("loss") if hist else None, "loss_last": hist[-1].get("loss") if hist else None,
            "metrics": out["metrics"], "ok": out["status"] == "completed"}


def run_serve(work: Path) -> dict:
    """benchmarks/serve_multilora.py as-is (CUDA vLLM); its CPU results file is kept, the GPU numbers come back here."""
    keep = ROOT / "benchmarks" / "results" / "serve_multilora.json"
    saved = keep.read_text() if keep.is_file() else None
    try:
        proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "serve_multilora.py"), *SERVE_ARGS],
                              capture_output=True, text=True, cwd=ROOT)
        result = json.loads(keep.read_text()) if keep.is_file() else {}
    finally:
        if saved is not None:
            keep.write_text(saved)
    if proc.returncode != 0:
        raise RuntimeError(f"serve_multilora.py exit {proc.returncode}: {(proc.stdout + proc.stderr)[-2000:]}")
    return {k: result.get(k) for k in ("vllm_startup_s", "vllm_1_adapter", "vllm_4_adapters_mixed", "ratio_mixed_vs_single",
                                       "complete")} | {"ok": bool(result.get("complete"))}


def run_ppo(built: dict) -> dict:
    from app.ppo.runner import run_ppo as launch

    t0 = time.perf_counter()
    run_dir, history = launch(built["ppo_grpo_vllm"])
    keys = ("reward_mean", "kl", "loss", "rollout_s", "update_s", "iteration_s", "tokens_per_s")
    return {"run_dir": str(run_dir), "iterations": len(history), "fit_s": round(time.perf_counter() - t0, 1),
            "history": [{k: h[k] for k in keys if k in h} for h in history], "ok": len(history) >= 3}


def run_section(name: str, work: Path, peak: float) -> dict:
    built = build_configs(work, peak)
    if name == "prepare":
        return run_prepare(work, built)
    if name in SFT_VARIANTS:
        return run_sft_variant(name, built)
    if name == "dpo_step":
        return run_dpo(work, built)
    if name == "serve_multilora":
        return run_serve(work)
    if name == "ppo_grpo_vllm":
        return run_ppo(built)
    raise ValueError(f"unknown section {name!r}")


# ---------------------------------------------------------------- driver
def dry_run(work: Path) -> dict:
    """Build and validate every section's config and import every module a section runs; start nothing."""
    import importlib

    built = build_configs(work, 9.89e14)
    for module in ("app.launch.run", "app.launch.preference", "app.train.dpo", "app.ppo.runner", "app.data.pipeline", "app.core.logprobs"):
        importlib.import_module(module)
    assert (ROOT / "benchmarks" / "serve_multilora.py").is_file()
    sections = {}
    for name, limit in SECTIONS:
        cfg = built[name]
        sections[name] = {"status": "validated", "limit_s": limit, "config": type(cfg).__name__}
    sections["sft_lora_bf16"]["runs"] = [str(SFT_GPU.relative_to(ROOT)), *SFT_VARIANTS["sft_lora_bf16"]]
    sections["ppo_grpo_vllm"]["runs"] = [str(PPO_GPU.relative_to(ROOT)), *ppo_overrides(work)]
    return {"dry_run": True, "budget_s": sum(limit for _, limit in SECTIONS), "sections": sections}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry-run", action="store_true", help="validate every config and module; start nothing (CPU, CI)")
    ap.add_argument("--only", default="", help="comma-separated sections to run (prepare always runs first)")
    ap.add_argument("--budget-s", type=float, default=480.0, help="stop starting sections after this many seconds")
    ap.add_argument("--out", default=None, help=f"results JSON (default {RESULTS.relative_to(ROOT)}; dry runs: stdout only)")
    ap.add_argument("--work", default=None, help="work folder (default: a new temp folder)")
    ap.add_argument("--section", default=None, help=argparse.SUPPRESS)  # child mode
    args = ap.parse_args(argv)
    if args.section:  # child: one section, result as the last stdout line
        result = run_section(args.section, Path(args.work), float(os.environ["GPU_CHECK_PEAK"]))
        print("GPU_CHECK_RESULT " + json.dumps(result, default=str), flush=True)
        return 0
    if args.dry_run:
        with tempfile.TemporaryDirectory(prefix="gpu-check-dry-") as tmp:
            doc = dry_run(Path(tmp))
        text = json.dumps(doc, indent=2)
        print(text)
        if args.out:
            Path(args.out).write_text(text)
        return 0

    import torch

    if os.environ.get("GPU_CHECK_CPU_SMOKE"):
        gpu, peak = "cpu-smoke", 1e11
    elif not torch.cuda.is_available():
        print("gpu_check: no CUDA device (torch.cuda.is_available() is False); use --dry-run on CPU", file=sys.stderr)
        return 2
    else:
        gpu, peak = gpu_for_device_name(torch.cuda.get_device_name(0))
    work = Path(args.work or tempfile.mkdtemp(prefix="gpu-check-"))
    work.mkdir(parents=True, exist_ok=True)
    wanted = {s for s in args.only.split(",") if s} or {name for name, _ in SECTIONS}
    doc = {"gpu": gpu, "device_name": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu", "bf16_peak_flops": peak, "torch": torch.__version__,
           "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "sections": {}}
    out = Path(args.out) if args.out else RESULTS
    t_start = time.perf_counter()
    for name, limit in SECTIONS:
        left = args.budget_s - (time.perf_counter() - t_start)
        if name != "prepare" and name not in wanted:
            continue
        if left < 20:
            doc["sections"][name] = {"status": "skipped", "reason": "budget spent"}
            continue
        t0 = time.perf_counter()
        env = dict(os.environ, GPU_CHECK_PEAK=str(peak), PYTHONPATH=str(ROOT))
        proc = subprocess.Popen([sys.executable, __file__, "--section", name, "--work", str(work)], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT, start_new_session=True)
        try:
            text, _ = proc.communicate(timeout=min(limit * (4 if os.environ.get("GPU_CHECK_CPU_SMOKE") else 1), left))
            lines = [line for line in text.splitlines() if line.startswith("GPU_CHECK_RESULT ")]
            if proc.returncode == 0 and lines:
                res = json.loads(lines[-1].split(" ", 1)[1])
                section = {"status": "ok" if res.pop("ok", True) else "failed", **res}
            else:
                section = {"status": "failed", "exit": proc.returncode, "tail": text[-2500:]}
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the child and the local Ray cluster it started (same session)
            text, _ = proc.communicate()
            section = {"status": "timeout", "limit_s": round(min(limit, left)), "tail": (text or "")[-2500:]}
        section["wall_s"] = round(time.perf_counter() - t0, 1)
        doc["sections"][name] = section
        print(f"[gpu_check] {name}: {section['status']} in {section['wall_s']} s", flush=True)
        out.write_text(json.dumps(doc | {"complete": False}, indent=2, default=str))  # a cut-short run keeps its numbers
    doc["total_s"] = round(time.perf_counter() - t_start, 1)
    out.write_text(json.dumps(doc | {"complete": True}, indent=2, default=str))
    print(json.dumps({k: v.get("status") for k, v in doc["sections"].items()}))
    return 0 if all(s.get("status") == "ok" for s in doc["sections"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
