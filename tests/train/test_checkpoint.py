"""checkpoint.py: manifest written last, invalid checkpoints never loaded, corrupt newest skipped with a warning."""

from __future__ import annotations

import logging
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from app.train.checkpoint import (
    MANIFEST, TrainState, any_rank, capture_rng_state, apply_rng_state, checkpoint_problem, finalize_checkpoint,
    load_state, newest_valid, restore_checkpoint,
)


def make_checkpoint(folder: Path, step: int) -> Path:
    folder.mkdir(parents=True)
    torch.save({"w": torch.full((64,), float(step))}, folder / "model.pt")
    (folder / "sub").mkdir()
    torch.save({"lr": 0.1 * step}, folder / "sub" / "optimizer.pt")
    finalize_checkpoint(folder, TrainState(config_hash="h", step=step, history=[{"step": step}]), rank=0)
    return folder


def test_manifest_lists_every_file_and_state(tmp_path):
    ck = make_checkpoint(tmp_path / "c5", 5)
    assert checkpoint_problem(ck) is None
    state = load_state(ck)
    assert state.step == 5 and state.config_hash == "h" and state.history == [{"step": 5}]
    assert not (ck / (MANIFEST + ".tmp")).exists()


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete_file", "no_manifest"])
def test_damaged_checkpoint_is_refused(tmp_path, damage):
    ck = make_checkpoint(tmp_path / "c", 3)
    target = ck / "model.pt"
    if damage == "truncate":
        target.write_bytes(target.read_bytes()[:100])
    elif damage == "flip":
        data = bytearray(target.read_bytes())
        data[-10] ^= 0xFF
        target.write_bytes(bytes(data))
    elif damage == "delete_file":
        (ck / "sub" / "optimizer.pt").unlink()
    else:
        (ck / MANIFEST).unlink()
    assert checkpoint_problem(ck) is not None


def test_corrupt_newest_is_skipped_with_warning(tmp_path, caplog):
    old = make_checkpoint(tmp_path / "checkpoint_a", 4)
    new = make_checkpoint(tmp_path / "checkpoint_b", 8)
    (new / "model.pt").write_bytes((new / "model.pt").read_bytes()[:50])  # truncated write
    with caplog.at_level(logging.WARNING, logger="app.train.checkpoint"):
        assert newest_valid([new, old]) == old
    assert "truncated" in caplog.text

    # the same through Ray's Checkpoint handle (what ray.train.get_checkpoint() returns): siblings are found
    from ray.train import Checkpoint

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="app.train.checkpoint"):
        with restore_checkpoint(Checkpoint.from_directory(str(new))) as folder:
            assert folder is not None and load_state(folder).step == 4
    assert "unusable" in caplog.text


def test_no_valid_checkpoint_means_fresh_start(tmp_path):
    ck = make_checkpoint(tmp_path / "c", 2)
    (ck / MANIFEST).write_text("{not json")
    assert newest_valid([ck]) is None
    with restore_checkpoint(None) as folder:
        assert folder is None


def test_checkpoint_ray_never_registered_is_found_in_the_run_folder(tmp_path):
    """A driver killed right after its first save: Ray's get_checkpoint() is None, the folder holds checkpoints."""
    make_checkpoint(tmp_path / "run" / "checkpoint_2026-01-01_00-00-01", 3)
    make_checkpoint(tmp_path / "run" / "checkpoint_2026-01-01_00-00-02", 6)
    (tmp_path / "run" / "checkpoint_2026-01-01_00-00-03").mkdir()  # being written when killed: no manifest
    with restore_checkpoint(None, tmp_path / "run") as folder:
        assert folder is not None and load_state(folder).step == 6
    with restore_checkpoint(None, tmp_path / "missing") as folder:
        assert folder is None


def test_rng_state_round_trip():
    state = capture_rng_state()
    a = (random.random(), np.random.rand(), torch.rand(3))
    apply_rng_state(state)
    b = (random.random(), np.random.rand(), torch.rand(3))
    assert a[0] == b[0] and a[1] == b[1] and torch.equal(a[2], b[2])


def test_any_rank_without_process_group_is_identity():
    assert any_rank(True) is True and any_rank(False) is False
