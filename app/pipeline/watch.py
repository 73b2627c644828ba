"""Follow a Ray Train run's checkpoints from the driver and turn them into job progress.

Every rayalign checkpoint ends with a manifest (``app.train.checkpoint.MANIFEST``) holding the step and the per-step
history; a new one becomes: status ``checkpointing``, then step / loss / tokens-per-second / checkpoint_path on the
job, then ``running`` again. No hook into the train loop is needed, and a resumed run is followed the same way.
"""

from __future__ import annotations

import threading
from pathlib import Path

from app.pipeline.progress import ProgressSink
from app.train.checkpoint import MANIFEST, read_manifest


def newest_checkpoint(run_dir: Path) -> tuple[Path, dict] | None:
    """(folder, manifest) of the highest-step checkpoint under ``run_dir`` that has a manifest, or None."""
    best = None
    for manifest_path in Path(run_dir).glob(f"**/{MANIFEST}"):
        manifest = read_manifest(manifest_path.parent)
        if manifest and (best is None or manifest["step"] > best[1]["step"]):
            best = (manifest_path.parent, manifest)
    return best


def progress_fields(folder: Path, manifest: dict) -> dict:
    """Job fields from a checkpoint manifest: step, last loss, last tokens/s, checkpoint path."""
    history = manifest.get("state", {}).get("history") or [{}]
    last = history[-1]
    tps = next((last[k] for k in ("tokens_per_sec", "tokens_per_s", "tok_per_s") if k in last), None)
    return {"step": int(manifest["step"]), "loss": last.get("loss"), "tokens_per_sec": tps,
            "checkpoint_path": str(folder)}


class CheckpointWatcher:
    """A daemon thread reporting new checkpoints of one run to a progress sink; use as a context manager."""

    def __init__(self, run_dir: Path, progress: ProgressSink, interval_s: float = 2.0):
        self.run_dir, self.progress, self.interval_s = Path(run_dir), progress, interval_s
        self.last_step = -1
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="checkpoint-watcher", daemon=True)

    def poll(self) -> None:
        found = newest_checkpoint(self.run_dir)
        if found is None or found[1]["step"] <= self.last_step:
            return
        fields = progress_fields(*found)
        self.last_step = fields["step"]
        self.progress.status("checkpoint", f"step {fields['step']}")
        self.progress.update(**fields)
        self.progress.status("resume", f"checkpoint at step {fields['step']} saved")

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.poll()
            except Exception:  # noqa: BLE001 - progress reporting must never kill training
                pass

    def __enter__(self) -> "CheckpointWatcher":
        if self.progress.follows_checkpoints:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        if self.progress.follows_checkpoints:
            self.poll()
