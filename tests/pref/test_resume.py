"""Reward/DPO resume on the shared engine: a checkpoint Ray never registered (driver killed between a save and the
controller's next report collection) is found in the run's storage folder, the same one SFT searches
(app/train/checkpoint.py); and the SIGTERM drill on 2 workers resumes exactly (the heavier fsdp2 / ZeRO-2 / ZeRO-3 and
kill matrix is benchmarks/train_resume.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from app.config.dpo import DPOConfig
from app.config.loader import load_config
from app.config.paths import REPO_ROOT
from app.config.reward import RewardConfig
from app.train.checkpoint import TrainState, finalize_checkpoint, load_state, restore_checkpoint


@pytest.mark.parametrize("kind, name, schema", [("reward", "reward_lora.yaml", RewardConfig), ("dpo", "dpo_sigmoid.yaml", DPOConfig)])
def test_preference_workers_search_the_run_folder_ray_writes_checkpoints_to(tmp_path, tiny_preference_artifact, kind, name, schema):
    from app.launch.trainer import trainer_for

    cfg = load_config(REPO_ROOT / "configs" / "tiny" / name, schema,
                      [f"data.artifact={tiny_preference_artifact}", f"ray.storage_path={tmp_path / 'runs'}"])
    trainer = trainer_for(kind, cfg, f"{kind}-killed")
    run_dir = Path(trainer.train_loop_config["run_dir"])
    assert run_dir == tmp_path / "runs" / f"{kind}-killed"  # RunConfig(storage_path, name): where Ray puts checkpoint_*
    for step, stamp in ((3, "00-00-01"), (6, "00-00-02")):
        folder = run_dir / f"checkpoint_2026-01-01_{stamp}"
        folder.mkdir(parents=True)
        torch.save({"w": torch.zeros(2)}, folder / "trainable.pt")
        finalize_checkpoint(folder, TrainState(config_hash="h", step=step), rank=0)
    (run_dir / "checkpoint_2026-01-01_00-00-03").mkdir()  # being written when the driver died: no manifest
    with restore_checkpoint(None, run_dir) as folder:  # what the loop does when ray.train.get_checkpoint() is None
        assert folder is not None and load_state(folder).step == 6


def losses(history):
    return [h["loss"] for h in history]


@pytest.mark.ray
@pytest.mark.parametrize("kind, name, schema", [("reward", "reward_lora.yaml", RewardConfig), ("dpo", "dpo_sigmoid.yaml", DPOConfig)])
def test_sigterm_on_two_workers_resumes_with_equal_losses_and_no_lost_step(ray_local, tiny_preference_artifact, tmp_path, kind, name, schema):
    """2 DDP workers on the shared engine: SIGTERM mid-step 3 → checkpoint at the boundary, 'preempted'; re-running
    the same name resumes; every per-step loss equals the uninterrupted run's (≤1e-6) and no step is lost or repeated."""
    from app.launch.preference import fit_preference

    def run(run_name, *extra):
        cfg = load_config(REPO_ROOT / "configs" / "tiny" / name, schema, [
            f"data.artifact={tiny_preference_artifact}", f"ray.storage_path={tmp_path / 'runs'}", f"ray.run_name={run_name}",
            "scaling.num_workers=2", "train.micro_batch_size=2", "train.max_steps=6", "checkpoint.every_steps=4",
            f"output.dir={tmp_path / run_name}", *extra])
        return fit_preference(kind, cfg)

    base = run("base")
    assert base["status"] == "completed" and base["step"] == 6 and base["resumed_from"] == []
    assert base["metrics"]["eval/pairs"] == 16 and "eval_before/accuracy" in base["metrics"]
    first = run("term", "fault.sigterm_at_step=3", "fault.rank=1")
    # the drill waits for the handler (it runs on the worker's main thread), so the ranks agree at step 3's boundary
    assert first["status"] == "preempted" and first["step"] == 3 and len(first["history"]) == 3
    second = run("term")
    assert second["status"] == "completed" and second["resumed_from"] == [first["step"]]
    assert len(first["history"]) + len(second["history"]) - second["resumed_from"][0] == 6  # 0 steps lost or repeated
    assert max(abs(a - b) for a, b in zip(losses(second["history"]), losses(base["history"]), strict=True)) <= 1e-6
    a = load_file(tmp_path / "base" / "adapter_model.safetensors")
    b = load_file(tmp_path / "term" / "adapter_model.safetensors")
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6, rtol=0) for k in a)
    lineage = json.loads((tmp_path / "term" / "rayalign_lineage.json").read_text())
    assert lineage["method"] == kind and lineage["config_hash"] == json.loads((tmp_path / "base" / "rayalign_lineage.json").read_text())["config_hash"]
