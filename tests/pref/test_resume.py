"""Reward/DPO resume finds a checkpoint Ray never registered (driver killed between a save and the controller's next
report collection): the workers get the run's storage folder, the same one SFT searches (app/train/checkpoint.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from app.config.dpo import DPOConfig
from app.config.loader import load_config
from app.config.paths import REPO_ROOT
from app.config.reward import RewardConfig
from app.train.checkpoint import TrainState, finalize_checkpoint, load_state, restore_checkpoint


@pytest.mark.parametrize("kind, name, schema", [("reward", "reward_lora.yaml", RewardConfig), ("dpo", "dpo_sigmoid.yaml", DPOConfig)])
def test_preference_workers_search_the_run_folder_ray_writes_checkpoints_to(tmp_path, kind, name, schema):
    from app.launch.preference import build_preference_trainer

    cfg = load_config(REPO_ROOT / "configs" / "tiny" / name, schema,
                      [f"data.artifact={tmp_path / 'artifact'}", f"ray.storage_path={tmp_path / 'runs'}"])
    trainer = build_preference_trainer(kind, cfg, f"{kind}-killed")
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
