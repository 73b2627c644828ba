"""Exact-resume drill for every strategy: tiny Llama, 2 workers, LoRA, 10 steps.

For each of DDP, FSDP2 and DeepSpeed ZeRO-2: uninterrupted run vs a worker killed after step 5 (automatic
restart from the step-5 checkpoint) vs SIGTERM during step 5 (checkpoint at the boundary, then re-run the same run
name). Reports the max per-step loss difference and the steps lost.

    python benchmarks/train_resume.py [ddp fsdp2 zero2]     # writes benchmarks/results/train_resume.json
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
from app.config.sft import SFTConfig  # noqa: E402
from app.data.synthetic import write_packed_artifact  # noqa: E402

CONFIGS = {"ddp": "sft_lora.yaml", "fsdp2": "sft_fsdp2.yaml", "zero2": "sft_zero2.yaml"}


def run(name: str, artifact: Path, storage: Path, run_name: str, *extra: str):
    from app.train.run import run_sft

    cfg = load_config(ROOT / "configs/tiny" / CONFIGS[name], SFTConfig,
                      [f"data.artifact={artifact}", f"ray.storage_path={storage}", f"ray.run_name={run_name}", "ray.num_cpus=2", *extra])
    return run_sft(cfg)


def max_diff(a, b) -> float:
    return max(abs(x["loss"] - y["loss"]) for x, y in zip(a, b, strict=True))


def main(names: list[str]) -> None:
    from app.config.paths import rayalign_home

    os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(rayalign_home() / "torch_extensions"))  # DeepSpeed JIT op cache
    work = Path(tempfile.mkdtemp(prefix="rayalign-resume-"))
    artifact = write_packed_artifact(work / "artifact")
    results = {}
    for name in names:
        t0 = time.time()
        base = run(name, artifact, work / name, "base")
        killed = run(name, artifact, work / name, "kill", "fault.kill_at_step=5", "fault.rank=1")
        first = run(name, artifact, work / name, "term", "fault.sigterm_at_step=5", "fault.rank=1")
        second = run(name, artifact, work / name, "term")
        results[name] = {
            "uninterrupted_losses": [h["loss"] for h in base.history],
            "kill": {"resumed_from": killed.resumed_from, "max_abs_loss_diff": max_diff(killed.history, base.history)},
            "sigterm": {
                "first_status": first.status, "first_steps": first.step, "resumed_from": second.resumed_from,
                "steps_lost": 10 - (first.step + second.step - second.resumed_from[0]) if second.resumed_from else None,
                "max_abs_loss_diff": max_diff(second.history, base.history),
            },
            "seconds": time.time() - t0,
        }
        print(name, json.dumps({k: v for k, v in results[name].items() if k != "uninterrupted_losses"}), flush=True)
    out = ROOT / "benchmarks" / "results" / "train_resume.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(out.read_text()) if out.is_file() else {}
    out.write_text(json.dumps({**previous, **results}, indent=2))


if __name__ == "__main__":
    main(sys.argv[1:] or list(CONFIGS))
