"""Exact-resume drill for every method × strategy of the one engine: tiny Llama, 2 CPU workers (gloo), LoRA.

Cases are ``<method>-<strategy>``: method sft | reward | dpo | simpo | orpo (the last two: the DPO loop with
``dpo.loss_type`` set), strategy ddp | fsdp2 | zero2 | zero3. For each:
an uninterrupted run vs a worker killed right after a checkpoint step (automatic restart from it) vs SIGTERM
during that step (checkpoint at the boundary, status 'preempted', then re-run the same run name). Reports the max
per-step loss difference against the uninterrupted run and the steps lost.

    python benchmarks/train_resume.py dpo-fsdp2 reward-zero3 …   # default: the whole matrix
    # merges into benchmarks/results/train_resume.json (one key per case; the old SFT keys ddp/fsdp2/zero2 stay)
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Ray starts workers at niceness 15 by default; a benchmark must not hand the bare baseline a priority edge.
os.environ.setdefault("RAY_worker_niceness", "0")

from app.config.loader import load_config  # noqa: E402

METHODS = {"sft": ("sft_lora.yaml", 10, 5), "reward": ("reward_lora.yaml", 8, 4), "dpo": ("dpo_sigmoid.yaml", 8, 4),
           "simpo": ("dpo_sigmoid.yaml", 8, 4), "orpo": ("dpo_sigmoid.yaml", 8, 4)}
LOSS_TYPES = ("simpo", "orpo")  # DPO-loop losses: the same engine loop, another preference_objective
STRATEGIES = {
    "ddp": ["strategy.kind=ddp"],
    "fsdp2": ["strategy.kind=fsdp2"],
    "zero2": ["strategy.kind=deepspeed", "strategy.zero_stage=2"],
    "zero3": ["strategy.kind=deepspeed", "strategy.zero_stage=3"],
}


def schema(method: str):
    from app.config.dpo import DPOConfig
    from app.config.reward import RewardConfig
    from app.config.sft import SFTConfig

    return {"sft": SFTConfig, "reward": RewardConfig, "dpo": DPOConfig}[method]


def artifacts(work: Path) -> dict[str, Path]:
    """A packed SFT artifact and a 48/16-pair preference artifact for the tiny model."""
    from app.data.synthetic import write_packed_artifact, write_preference_artifact
    from app.models.loader import load_tokenizer, resolve_model

    tok = load_tokenizer(str(resolve_model("tiny:llama").path))
    return {"sft": write_packed_artifact(work / "sft"), "pref": write_preference_artifact(work / "pref", tok, 48, 16)}


def run(case: str, data: dict[str, Path], storage: Path, run_name: str, *extra: str):
    from app.launch.preference import ensure_reference_logprobs
    from app.launch.run import run_training

    method, strategy = case.split("-")
    name, steps, every = METHODS[method]
    if method in LOSS_TYPES:
        extra = (f"dpo.loss_type={method}", *extra)
        method = "dpo"
    artifact = data["sft" if method == "sft" else "pref"]
    overrides = [f"data.artifact={artifact}", f"ray.storage_path={storage}", f"ray.run_name={run_name}", "ray.num_cpus=2",
                 "scaling.num_workers=2", "scaling.cpus_per_worker=0.5", "scaling.max_failures=2", f"train.max_steps={steps}",
                 f"checkpoint.every_steps={every}", *STRATEGIES[strategy], *extra]
    if method != "sft":
        overrides += ["train.micro_batch_size=2", "train.epochs=5"]
    else:  # configs/tiny/sft_lora.yaml takes 2 rows a step (it chains after the tiny ingest); these drills use 8
        overrides += ["train.micro_batch_size=2", "train.grad_accum=2"]
    cfg = load_config(ROOT / "configs/tiny" / name, schema(method), overrides)
    if method == "dpo":
        ensure_reference_logprobs(cfg)
    return run_training(method, cfg)


def max_diff(a, b) -> float:
    return max(abs(x["loss"] - y["loss"]) for x, y in zip(a, b, strict=True))


def drill(case: str, data: dict[str, Path], storage: Path) -> dict:
    steps, at = METHODS[case.split("-")[0]][1:]
    t0 = time.time()
    base = run(case, data, storage, "base")
    killed = run(case, data, storage, "kill", f"fault.kill_at_step={at}", "fault.rank=1")
    first = run(case, data, storage, "term", f"fault.sigterm_at_step={at}", "fault.rank=1")
    second = run(case, data, storage, "term")
    return {
        "steps": steps, "uninterrupted_losses": [h["loss"] for h in base.history],
        "kill": {"at_step": at, "status": killed.status, "resumed_from": killed.resumed_from,
                 "max_abs_loss_diff": max_diff(killed.history, base.history)},
        "sigterm": {
            "at_step": at, "first_status": first.status, "first_steps": first.step, "resumed_from": second.resumed_from,
            "steps_lost": steps - (first.step + second.step - second.resumed_from[0]) if second.resumed_from else None,
            "max_abs_loss_diff": max_diff(second.history, base.history),
        },
        "seconds": round(time.time() - t0, 1),
    }


def main(cases: list[str]) -> None:
    from app.config.paths import rayalign_home
    from app.launch.runtime import init_ray

    os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(rayalign_home() / "torch_extensions"))  # DeepSpeed JIT op cache
    work = Path(tempfile.mkdtemp(prefix="rayalign-resume-"))
    from app.config.common import RaySpec

    init_ray(RaySpec(address="local", num_cpus=2))
    data = artifacts(work)
    out = ROOT / "benchmarks" / "results" / "train_resume.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    for case in cases:
        try:
            result = drill(case, data, work / case)
        except Exception as exc:  # record the failure and go on with the other cases
            result = {"error": f"{type(exc).__name__}: {str(exc)[:500]}"}
        print(case, json.dumps({k: v for k, v in result.items() if k != "uninterrupted_losses"}), flush=True)
        previous = json.loads(out.read_text()) if out.is_file() else {}
        out.write_text(json.dumps({**previous, case: result}, indent=2))


if __name__ == "__main__":
    main(sys.argv[1:] or [f"{m}-{s}" for m in ("reward", "dpo", "simpo") for s in ("fsdp2", "zero2", "zero3")])
