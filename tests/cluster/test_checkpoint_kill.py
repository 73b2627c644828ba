"""A process killed while it writes a checkpoint leaves the previous checkpoint loadable (the manifest rule).

A real writer process copies a staged checkpoint into the run folder the way a storage upload does (file by file)
and is SIGKILLed halfway through the largest file. Two orders are drilled: manifest last (our local rule: the
folder has no manifest) and manifest first (an object-store upload copies files in any order: the manifest is
there but a file is short). Either way restore walks back to the previous, complete checkpoint.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from app.train.checkpoint import MANIFEST, TrainState, checkpoint_problem, finalize_checkpoint, load_state, restore_checkpoint

WRITER = r"""
import os, shutil, sys, time
from pathlib import Path
src, dst, manifest_first = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] == "1"
dst.mkdir(parents=True)
files = sorted(p for p in src.iterdir() if p.name != "rayalign_checkpoint.json")
order = ([src / "rayalign_checkpoint.json"] if manifest_first else []) + files + ([] if manifest_first else [src / "rayalign_checkpoint.json"])
for p in order:
    with open(p, "rb") as fin, open(dst / p.name, "wb") as fout:
        while chunk := fin.read(1 << 16):
            fout.write(chunk); fout.flush(); time.sleep(0.002)   # a slow link: the kill lands mid-file
"""


def write_checkpoint(folder: Path, step: int, n: int) -> Path:
    folder.mkdir(parents=True)
    torch.save({"w": torch.full((n,), float(step))}, folder / "model.pt")
    torch.save({"step": step}, folder / "optimizer.pt")
    finalize_checkpoint(folder, TrainState(config_hash="h", step=step), rank=0)
    return folder


@pytest.mark.parametrize("manifest_first", [False, True], ids=["manifest-last", "manifest-first"])
def test_kill_during_checkpoint_write_keeps_the_previous_one_loadable(tmp_path, manifest_first):
    from ray.train import Checkpoint

    run = tmp_path / "run"
    previous = write_checkpoint(run / "checkpoint_000001", step=5, n=1000)
    staged = write_checkpoint(tmp_path / "staged", step=10, n=4_000_000)  # 16 MB model.pt
    target = run / "checkpoint_000002"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(staged), str(target), "1" if manifest_first else "0"])
    deadline = time.time() + 60
    while not ((target / "model.pt").is_file() and (target / "model.pt").stat().st_size > 1 << 20):
        assert proc.poll() is None and time.time() < deadline, "writer finished before it could be killed"
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)  # the node dies mid-write
    proc.wait()

    assert (target / "model.pt").stat().st_size < (staged / "model.pt").stat().st_size  # really cut short
    assert (target / MANIFEST).is_file() == manifest_first
    assert checkpoint_problem(target) is not None
    with restore_checkpoint(Checkpoint.from_directory(str(target))) as folder:
        assert folder is not None and load_state(folder).step == 5
        assert torch.load(folder / "model.pt")["w"][0].item() == 5.0
    assert json.loads((previous / MANIFEST).read_text())["step"] == 5
