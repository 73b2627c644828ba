"""Fault-tolerant training checkpoints shared by every train loop (sft, reward, dpo) and PPO.

A checkpoint is a folder of files written by each rank plus ``rayalign_checkpoint.json`` (the manifest), written
LAST by rank 0 with the sha256 and size of every file of every rank. A folder whose manifest is missing or does not
match its files is never loaded: restore walks back to the newest valid checkpoint, with a warning.

    state = TrainState(config_hash=h)                       # step, data cursor, loss history, status
    with restore_checkpoint(ray.train.get_checkpoint()) as folder:   # None on a fresh run
        if folder: state = load_state(folder); ...load weights/optimizer...; restore_rng_state(folder, rank)
    ...
    with staged_checkpoint(rank) as folder:                  # temp dir, removed after reporting
        torch.save(weights, folder / "model.pt")             # rank-unique file names
        write_rng_state(folder, rank)
        finalize_checkpoint(folder, state, rank)             # gathers digests, rank 0 writes the manifest last
        ray.train.report(metrics, checkpoint=Checkpoint.from_directory(folder))

Preemption: ``install_sigterm_handler`` must run on the worker's main thread (Ray Train runs the loop in another
thread; app/launch/trainer.py installs it from the backend's ``on_start``). The loop polls
``preemption_requested()`` at each step boundary (all ranks agree via ``any_rank``), checkpoints, and returns
status ``preempted``. Keeping the K newest is Ray's ``CheckpointConfig(num_to_keep=K)``.

Run-folder checkpoints (PPO: several independent actors plus driver state, no Ray Train) use the same manifest and
validity rules: actors write into ``stage_run_checkpoint(run, step)``; ``commit_run_checkpoint`` writes the manifest
(driver state as ``extra``) last, renames the folder into ``<run>/checkpoints/iter_<step>`` and prunes;
``latest_run_checkpoint`` returns the newest folder that passes ``checkpoint_problem``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import random
import shutil
import signal
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

log = logging.getLogger(__name__)

MANIFEST = "rayalign_checkpoint.json"
FORMAT_VERSION = 1
_PREEMPT = threading.Event()


@dataclass
class TrainState:
    """Everything besides tensors that an exact resume needs.

    ``step`` optimizer steps are done; the data cursor is (``epoch``, ``batch_in_epoch``) = the next optimizer
    step's position inside the epoch's deterministic order. ``history`` holds one dict per finished step.
    """

    config_hash: str = ""
    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    status: str = "running"
    history: list[dict[str, float]] = field(default_factory=list)
    resumed_from: list[int] = field(default_factory=list)
    tracking_run_id: str | None = None
    eval_before: dict[str, float] = field(default_factory=dict)  # held-out figures before step 1 (preference methods)
    latest_eval: dict[str, float] = field(default_factory=dict)  # the newest held-out figures (ride along in reports)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainState":
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


# ---------------------------------------------------------------- RNG
def capture_rng_state() -> dict[str, Any]:
    """Python, numpy and torch (CPU, and CUDA when present) generator states."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def apply_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def write_rng_state(folder: Path, rank: int) -> None:
    torch.save(capture_rng_state(), Path(folder) / f"rng_rank{rank}.pt")


def restore_rng_state(folder: Path, rank: int) -> None:
    apply_rng_state(torch.load(Path(folder) / f"rng_rank{rank}.pt", weights_only=False))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# ---------------------------------------------------------------- manifest
def file_digest(path: Path) -> dict[str, Any]:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return {"sha256": h.hexdigest(), "bytes": path.stat().st_size}


def local_digests(folder: Path) -> dict[str, dict[str, Any]]:
    """sha256 + size of every file under ``folder`` (relative POSIX paths), the manifest excluded."""
    out = {}
    for p in sorted(Path(folder).rglob("*")):
        if p.is_file() and p.name != MANIFEST:
            with open(p, "rb") as f:
                os.fsync(f.fileno())
            out[p.relative_to(folder).as_posix()] = file_digest(p)
    return out


def gather_digests(local: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Union of every rank's file digests (all_gather over torch.distributed when it is initialized)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return dict(local)
    parts: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, local)
    merged: dict[str, dict[str, Any]] = {}
    for part in parts:
        clash = set(part) & set(merged)
        if any(merged[k] != part[k] for k in clash):
            raise RuntimeError(f"two ranks wrote different files with the same name: {sorted(clash)[:3]}")
        merged.update(part)
    return merged


def finalize_checkpoint(folder: Path, state: TrainState, rank: int, extra: dict[str, Any] | None = None) -> None:
    """Collective: gather every rank's file digests; rank 0 writes the manifest last (temp file + atomic rename)."""
    files = gather_digests(local_digests(Path(folder)))
    if rank != 0:
        return
    manifest = {
        "format": FORMAT_VERSION,
        "step": state.step,
        "config_hash": state.config_hash,
        "created_at": time.time(),
        "files": files,
        "state": state.to_dict(),
        "extra": extra or {},
    }
    tmp = Path(folder) / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, Path(folder) / MANIFEST)


def read_manifest(folder: Path) -> dict[str, Any] | None:
    path = Path(folder) / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("format") == FORMAT_VERSION else None


def checkpoint_problem(folder: Path, verify_hashes: bool = True) -> str | None:
    """Why ``folder`` is not a loadable checkpoint, or None when it is (manifest present, every file intact)."""
    manifest = read_manifest(folder)
    if manifest is None:
        return f"{folder}: no valid {MANIFEST} (incomplete or not a rayalign checkpoint)"
    for rel, want in manifest["files"].items():
        p = Path(folder) / rel
        if not p.is_file():
            return f"{folder}: missing file {rel}"
        if p.stat().st_size != want["bytes"]:
            return f"{folder}: {rel} has {p.stat().st_size} bytes, manifest says {want['bytes']} (truncated?)"
        if verify_hashes and file_digest(p)["sha256"] != want["sha256"]:
            return f"{folder}: {rel} sha256 mismatch (corrupt)"
    return None


def load_state(folder: Path) -> TrainState:
    manifest = read_manifest(folder)
    if manifest is None:
        raise ValueError(f"{folder}: not a valid checkpoint")
    return TrainState.from_dict(manifest["state"])


def newest_valid(folders: list[Path]) -> Path | None:
    """The valid checkpoint with the highest step among ``folders``; every invalid one is skipped with a warning."""
    ranked = sorted(folders, key=lambda f: (read_manifest(f) or {}).get("step", -1), reverse=True)
    for folder in ranked:
        problem = checkpoint_problem(folder)
        if problem is None:
            return folder
        log.warning("skipping checkpoint: %s", problem)
    return None


def unregistered_checkpoint(run_dir: str | Path | None):
    """A ray.train.Checkpoint for the newest ``checkpoint_*`` folder with a manifest in a local run folder, or None.

    Ray Train registers a checkpoint only when its controller next collects the workers' reports; a run killed in
    between (driver SIGKILLed right after its first save) leaves that checkpoint on disk but out of Ray's snapshot,
    so ``ray.train.get_checkpoint()`` is None on the re-run although a valid checkpoint exists.
    """
    if not run_dir or "://" in str(run_dir) or not Path(run_dir).is_dir():
        return None
    found = [f for f in Path(run_dir).glob("checkpoint_*") if (f / MANIFEST).is_file()]
    if not found:
        return None
    from ray.train import Checkpoint

    newest = max(found, key=lambda f: (read_manifest(f) or {}).get("step", -1))
    return Checkpoint.from_directory(str(newest))


@contextlib.contextmanager
def restore_checkpoint(checkpoint, run_dir: str | Path | None = None) -> Iterator[Path | None]:
    """Local folder of the newest VALID checkpoint of this run (Ray's latest, else its older siblings), or None.

    ``checkpoint`` is what ``ray.train.get_checkpoint()`` returned (a ray.train.Checkpoint or None). Siblings are
    found next to it on the same (local or remote) filesystem, so a corrupt newest checkpoint falls back to the
    previous one. When Ray has none, ``run_dir`` (the run's local storage folder) is searched for checkpoints Ray
    never registered (see ``unregistered_checkpoint``).
    """
    if checkpoint is None:
        checkpoint = unregistered_checkpoint(run_dir)
        if checkpoint is not None:
            log.warning("Ray has no registered checkpoint for this run; resuming from %s found on disk", checkpoint.path)
    if checkpoint is None:
        yield None
        return
    from pyarrow import fs as pafs
    from ray.train import Checkpoint

    parent = checkpoint.path.rstrip("/").rsplit("/", 1)[0]
    infos = checkpoint.filesystem.get_file_info(pafs.FileSelector(parent))
    candidates = [
        Checkpoint(path=i.path, filesystem=checkpoint.filesystem)
        for i in infos
        if i.type == pafs.FileType.Directory and (i.base_name.startswith("checkpoint_") or i.path == checkpoint.path)
    ]
    candidates.sort(key=lambda c: c.path != checkpoint.path)  # Ray's latest first
    with contextlib.ExitStack() as stack:
        local = {c.path: Path(stack.enter_context(c.as_directory())) for c in candidates}
        chosen = newest_valid(list(local.values()))
        if chosen is not None and chosen != local[checkpoint.path]:
            log.warning("newest checkpoint %s is unusable; resuming from %s", checkpoint.path, chosen)
        yield chosen


@contextlib.contextmanager
def staged_checkpoint(rank: int, step: int) -> Iterator[Path]:
    """A fresh local temp folder for this rank's checkpoint files; removed once the block (and report) is done."""
    folder = Path(tempfile.mkdtemp(prefix=f"rayalign-ckpt-s{step}-r{rank}-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# ---------------------------------------------------------------- run-folder checkpoints (no Ray Train)
def run_checkpoint_dir(run_dir: str | Path, step: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"iter_{step:06d}"


def stage_run_checkpoint(run_dir: str | Path, step: int) -> Path:
    """An empty ``iter_<step>.tmp`` folder for the actors' files; invisible to resume until committed."""
    stage = run_checkpoint_dir(run_dir, step).with_suffix(".tmp")
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    return stage


def commit_run_checkpoint(run_dir: str | Path, state: TrainState, extra: dict[str, Any], keep: int) -> Path:
    """Manifest last (digests of every staged file, ``state``, ``extra``), rename into place, keep the ``keep`` newest."""
    stage = run_checkpoint_dir(run_dir, state.step).with_suffix(".tmp")
    finalize_checkpoint(stage, state, rank=0, extra=extra)
    final = run_checkpoint_dir(run_dir, state.step)
    shutil.rmtree(final, ignore_errors=True)
    stage.rename(final)
    done = sorted(p for p in final.parent.glob("iter_*") if p.suffix != ".tmp")
    for old in done[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_run_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest committed checkpoint of ``run_dir`` whose files match its manifest (corrupt ones skipped), or None."""
    return newest_valid([p for p in (Path(run_dir) / "checkpoints").glob("iter_*") if p.suffix != ".tmp"])


# ---------------------------------------------------------------- preemption
def install_sigterm_handler() -> bool:
    """On SIGTERM, only raise the preemption flag (the loop checkpoints at the next step boundary).

    Must run on the process's main thread; returns False (and installs nothing) elsewhere.
    """
    if threading.current_thread() is not threading.main_thread():
        return False
    signal.signal(signal.SIGTERM, lambda signum, frame: _PREEMPT.set())
    return True


def preemption_requested() -> bool:
    return _PREEMPT.is_set()


def wait_for_preemption_flag(timeout_s: float) -> bool:
    """Block until the SIGTERM handler has raised the flag (or ``timeout_s`` passes). Python runs a signal handler on
    the main thread, which in a Ray Train worker is not the loop's thread and may be inside C code for a while: a
    drill that signals itself waits here so the flag is seen at the step it chose, not one or two steps later."""
    return _PREEMPT.wait(timeout_s)


def collective_device() -> torch.device:
    """Where a tensor for a torch.distributed collective must live: the current GPU under NCCL (it reduces only
    CUDA tensors), else the CPU (gloo, or no process group)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def any_rank(flag: bool) -> bool:
    """True when ``flag`` is True on any rank (all_reduce MAX); the same answer everywhere keeps ranks in lockstep."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return flag
    t = torch.tensor([1 if flag else 0], dtype=torch.int32, device=collective_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())
