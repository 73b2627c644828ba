"""Reward model and DPO on real Ray Train (tiny model, tiny artifact): they learn, save loadable outputs, resume exactly."""

from __future__ import annotations

import json
import os

import pytest

from app.config.dpo import DPOConfig
from app.config.loader import load_config
from app.config.paths import REPO_ROOT
from app.config.reward import RewardConfig

pytestmark = pytest.mark.ray


def tiny_config(name, schema, artifact, tmp_path, *overrides):
    return load_config(
        REPO_ROOT / "configs" / "tiny" / name, schema,
        [f"data.artifact={artifact}", f"ray.storage_path={tmp_path / 'runs'}", *overrides],
    )


def test_reward_model_learns_and_loads(ray_local, tiny_preference_artifact, tmp_path):
    from app.launch.preference import fit_preference
    from app.models.reward_head import load_reward_model

    # a RELATIVE artifact path, as the configs use: the Train workers must read it from the driver's working directory
    artifact = os.path.relpath(tiny_preference_artifact)
    cfg = tiny_config("reward_lora.yaml", RewardConfig, artifact, tmp_path, f"output.dir={tmp_path / 'rm'}", "train.epochs=3")
    summary = fit_preference("reward", cfg)
    m = summary["metrics"]
    assert m["eval/pairs"] == 16  # the artifact's validation split
    assert m["eval/accuracy"] > m["eval_before/accuracy"] and m["eval/accuracy"] >= 0.8, m
    assert m["eval/margin"] > m["eval_before/margin"]
    rm = load_reward_model(summary["output_dir"])
    lineage = rm.lineage
    assert lineage["method"] == "reward" and lineage["dataset_id"].startswith("preference-") and lineage["lora"]["r"] == 4
    assert set(lineage) >= {"base_model_source", "base_sha", "config_hash", "metrics", "created_at"}
    from app.data.artifact import load_artifact

    val = load_artifact(tiny_preference_artifact).read_table("validation").to_pylist()
    chosen = rm.score([r["chosen_input_ids"] for r in val])
    rejected = rm.score([r["rejected_input_ids"] for r in val])
    # the reloaded model reproduces the held-out accuracy the run reported
    assert (chosen > rejected).float().mean().item() == pytest.approx(m["eval/accuracy"], abs=1e-6)


def test_dpo_learns(ray_local, tiny_preference_artifact, tmp_path):
    from app.launch.preference import fit_preference

    straight = fit_preference("dpo", tiny_config("dpo_sigmoid.yaml", DPOConfig, tiny_preference_artifact, tmp_path,
                                                  "train.max_steps=8", "train.epochs=5", f"output.dir={tmp_path / 'a'}"))
    m = straight["metrics"]
    assert abs(m["eval_before/margin"]) < 1e-4  # policy == reference (LoRA B = 0): implicit rewards ~ 0
    assert m["eval/accuracy"] > 0.6 and m["eval/margin"] > 0, m
    assert m["train/rewards/chosen"] > m["train/rewards/rejected"]
    assert 0 < m["mfu"] <= 1  # peak FLOP/s from the hardware (measured CPU matmul), never a guessed constant
    lineage = json.loads((tmp_path / "a" / "rayalign_lineage.json").read_text())
    assert lineage["method"] == "dpo" and lineage["dpo"]["loss_type"] == "sigmoid"
    assert lineage["metrics"]["eval/accuracy"] == pytest.approx(m["eval/accuracy"])
