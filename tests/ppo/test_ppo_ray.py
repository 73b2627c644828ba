"""PPO through real Ray actors on the tiny model: one full iteration; a killed policy actor resumes from checkpoint."""

from __future__ import annotations

import json
import math

import pytest
import ray

from app.ppo.driver import PPODriver
from app.train.checkpoint import latest_run_checkpoint, load_state, read_manifest

pytestmark = pytest.mark.ray


def test_one_ppo_iteration_through_real_actors(ray_local, tiny_cfg):
    cfg = tiny_cfg("ppo_gae.yaml", "run.iterations=1", "tracking.enabled=true")
    driver = PPODriver(cfg, cfg.run.output_dir)
    try:
        before = ray.get(driver.policy.call_one("digest"))
        [m] = driver.run()
        after = ray.get(driver.policy.call_one("digest"))
    finally:
        driver.shutdown()
    assert before != after  # the clipped update really moved the LoRA weights
    for key in ("reward_mean", "reward_std", "kl", "policy_loss", "value_loss", "clip_frac", "approx_kl", "entropy",
                "response_length", "seconds_generation", "seconds_scoring", "seconds_training", "seconds_sync"):
        assert math.isfinite(m[key]), key
    assert m["entropy"] > 0 and m["response_length"] > 0
    run = driver.run_dir
    lineage = json.loads((run / "adapter" / "rayalign_lineage.json").read_text())
    assert lineage["method"] == "ppo" and lineage["lora"]["r"] == cfg.lora.r and len(lineage["base_sha"]) == 64
    assert (run / "adapter" / "adapter_model.safetensors").is_file() and (run / "ppo_curves.png").stat().st_size > 0
    from mlflow.tracking import MlflowClient

    from app.tracking.mlflow_store import tracking_uri

    logged = MlflowClient(tracking_uri(cfg.tracking)).get_run(driver.mlflow_run_id).data.metrics
    assert {"reward_mean", "kl", "clip_frac", "seconds_generation"} <= set(logged)


def test_killed_policy_actor_resumes_from_checkpoint(ray_local, tiny_cfg):
    cfg = tiny_cfg("ppo_gae.yaml", "run.iterations=3")
    driver = PPODriver(cfg, cfg.run.output_dir)
    saved = {}

    def kill_after_second(drv, metrics):
        if metrics["iteration"] == 2 and not saved:
            saved["digest"] = ray.get(drv.policy.call_one("digest"))
            saved["cursor"] = drv.cursor.position
            ray.kill(drv.policy.actors[0], no_restart=True)  # the policy process dies between iterations

    restored = {}
    original_restore = driver.restore

    def spy_restore(folder):
        restored["digest"] = original_restore(folder)
        restored["folder"] = folder
        return restored["digest"]

    driver.restore = spy_restore
    try:
        history = driver.run(on_iteration=kill_after_second)
    finally:
        driver.shutdown()
    assert driver.restarts == 1
    assert restored["folder"].name == "iter_000002" and restored["digest"] == saved["digest"]
    assert [h["iteration"] for h in history] == [1, 2, 3]
    last = latest_run_checkpoint(driver.run_dir)
    cursor = read_manifest(last)["extra"]["cursor"]["position"]
    assert load_state(last).step == 3 and cursor == saved["cursor"] + cfg.run.prompts_per_iteration

    # a new driver process on the same run folder continues where the last one stopped
    again = PPODriver(cfg.model_copy(update={"run": cfg.run.model_copy(update={"iterations": 4})}), driver.run_dir)
    try:
        assert again.iteration == 3 and again.cursor.position == cursor
        assert again.run()[-1]["iteration"] == 4
    finally:
        again.shutdown()


def test_grpo_with_separate_reference_actor_disaggregated(ray_local, tiny_cfg):
    cfg = tiny_cfg("ppo_grpo.yaml", "run.iterations=1", "placement.colocate=false", "placement.reference=actor")
    driver = PPODriver(cfg, cfg.run.output_dir)
    try:
        assert driver.value is None and driver.reference is not None
        [m] = driver.run()
    finally:
        driver.shutdown()
    assert "value_loss" not in m and math.isfinite(m["policy_loss"]) and m["kl"] == pytest.approx(0.0, abs=1e-4)


def test_ppo_iteration_with_a_trained_reward_model(ray_local, tiny_cfg, tiny_reward_model):
    """RM served by the reward actor, rule logged beside it (weight 0), length penalty applied: reward = rm - lp*len."""
    cfg = tiny_cfg("ppo_gae.yaml", "run.iterations=1", "reward.kind=sum", f"reward.model_path={tiny_reward_model}",
                   "reward.rule_weight=0", "reward.length_penalty=0.01")
    driver = PPODriver(cfg, cfg.run.output_dir)
    try:
        [m] = driver.run()
    finally:
        driver.shutdown()
    assert math.isfinite(m["rm_score"]) and m["rm_score"] != 0.0 and 0.0 <= m["rule_score"] <= 1.5
    assert m["reward_mean"] == pytest.approx(m["rm_score"] - 0.01 * m["response_length"], abs=1e-4)
    assert m["reward_std"] > 0  # the RM tells responses apart
    lineage = json.loads((driver.run_dir / "adapter" / "rayalign_lineage.json").read_text())
    assert lineage["parents"]["reward_model"]["dataset_id"] == "preference-tinyrm"
    assert lineage["dataset_id"].startswith("jsonl-") and len(lineage["dataset_id"]) == 22  # the prompts' hash, not a path
    assert "rm_score" in lineage["metrics"]


def test_sft_initialised_policy_resumes_from_checkpoint(ray_local, tiny_cfg, tiny_sft_adapter, tiny_reward_model):
    """Policy = the SFT adapter (reference = the same adapter, frozen: KL 0 before the first update); a second driver
    on the run folder resumes the SFT-initialised policy from its checkpoint."""
    cfg = tiny_cfg("ppo_grpo.yaml", "run.iterations=2", f"init.adapter={tiny_sft_adapter}", "reward.kind=model",
                   f"reward.model_path={tiny_reward_model}")  # the RM's scores vary within a group: updates happen
    driver = PPODriver(cfg, cfg.run.output_dir)
    try:
        assert ray.get(driver.policy.call_one("adapter_shape")) == {"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]}
        history = driver.run()
        digest = ray.get(driver.policy.call_one("digest"))
    finally:
        driver.shutdown()
    assert history[0]["kl"] == pytest.approx(0.0, abs=1e-6)  # pi == frozen SFT reference before any update
    assert abs(history[1]["kl"]) > 1e-5  # the policy moved away from it (k1 can be negative on a sample)
    again = PPODriver(cfg.model_copy(update={"run": cfg.run.model_copy(update={"iterations": 3})}), driver.run_dir)
    try:
        assert again.iteration == 2 and ray.get(again.policy.call_one("digest")) == digest
        assert again.run()[-1]["iteration"] == 3
    finally:
        again.shutdown()
    lineage = json.loads((driver.run_dir / "adapter" / "rayalign_lineage.json").read_text())
    assert lineage["parents"]["init_adapter"]["dataset_id"] == "sft-tinysft" and lineage["parents"]["reference"] == "init"
    assert lineage["lora"]["r"] == 4
