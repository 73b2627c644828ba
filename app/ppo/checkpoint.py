"""PPO run checkpoints: every trainable actor's weights + optimizer, the KL controller, the prompt cursor.

Layout: ``<run>/checkpoints/iter_000007/{policy.pt, adapter/, value.pt, driver.json}``. A checkpoint is written into
a ``.tmp`` folder and renamed only when complete, so a crash mid-save never leaves a half checkpoint that resume picks.
(Kept here rather than in app/train/checkpoint.py: that module drives Ray Train checkpoints of one worker group,
while a PPO checkpoint spans several independent actors plus driver state.)
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

DRIVER_STATE = "driver.json"


def checkpoint_dir(run_dir: str | Path, iteration: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"iter_{iteration:06d}"


def staging_dir(run_dir: str | Path, iteration: int) -> Path:
    """Where actors write a checkpoint before ``commit_checkpoint`` makes it visible."""
    path = checkpoint_dir(run_dir, iteration).with_suffix(".tmp")
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def commit_checkpoint(run_dir: str | Path, iteration: int, driver_state: dict, keep: int) -> Path:
    """Write the driver state last, rename the staging folder into place, prune older checkpoints."""
    stage = checkpoint_dir(run_dir, iteration).with_suffix(".tmp")
    (stage / DRIVER_STATE).write_text(json.dumps(driver_state, indent=1), encoding="utf-8")
    final = checkpoint_dir(run_dir, iteration)
    if final.exists():
        shutil.rmtree(final)
    stage.rename(final)
    done = sorted(p for p in final.parent.glob("iter_*") if p.suffix != ".tmp")
    for old in done[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest complete checkpoint folder, or None."""
    root = Path(run_dir) / "checkpoints"
    done = sorted(p for p in root.glob("iter_*") if p.suffix != ".tmp" and (p / DRIVER_STATE).is_file())
    return done[-1] if done else None


def read_driver_state(folder: str | Path) -> dict:
    return json.loads((Path(folder) / DRIVER_STATE).read_text(encoding="utf-8"))
