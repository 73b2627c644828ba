"""algo.mode=async on the tiny model through real Ray actors: max_staleness=0 reproduces sync; a killed rollout worker
is replaced and its batch generated again; the config refuses what async does not run."""

from __future__ import annotations

import pytest
import ray

from app.ppo.async_driver import AsyncPPODriver, make_driver
from app.ppo.driver import PPODriver


def _run(driver, on_iteration=None):
    try:
        return driver.run(on_iteration=on_iteration)
    finally:
        driver.shutdown()


@pytest.mark.ray
def test_async_staleness_zero_reproduces_sync_losses(ray_local, tiny_cfg, tmp_path):
    common = ("run.iterations=3", "rollout.max_new_tokens=8")
    sync_cfg = tiny_cfg("ppo_grpo.yaml", *common, f"run.output_dir={tmp_path / 'sync'}")
    async_cfg = tiny_cfg("ppo_grpo.yaml", *common, f"run.output_dir={tmp_path / 'async'}", "algo.mode=async",
                         "algo.max_staleness=0", "algo.is_correction=tis")
    sync = _run(make_driver(sync_cfg, sync_cfg.run.output_dir))
    driver = make_driver(async_cfg, async_cfg.run.output_dir)
    assert isinstance(driver, AsyncPPODriver)
    asyn = _run(driver)
    assert [h["policy_lag"] for h in asyn] == [0, 0, 0] and [h["sample_version"] for h in asyn] == [0, 1, 2]
    for s, a in zip(sync, asyn):
        assert a["sample"] == s["sample"]  # the same tokens were sampled
        for key in ("policy_loss", "reward_mean", "kl", "clip_frac", "approx_kl"):
            assert abs(a[key] - s[key]) <= 1e-5, (a["iteration"], key, a[key], s[key])
        # rollout log-probs from the worker's generate agree with the trainer's recomputation
        assert abs(a["is_ratio_mean"] - 1.0) < 1e-4 and a["is_truncated_frac"] == 0.0


@pytest.mark.ray
def test_async_killed_rollout_worker_is_replaced_and_no_step_is_lost(ray_local, tiny_cfg):
    cfg = tiny_cfg("ppo_grpo.yaml", "run.iterations=4", "algo.mode=async", "algo.max_staleness=1",
                   "algo.is_correction=mis")
    driver = AsyncPPODriver(cfg, cfg.run.output_dir)
    killed = {}

    def kill_after_first(drv, metrics):
        if metrics["iteration"] == 1:  # the worker is now generating batch 1 ahead of the trainer (or has just done so)
            killed["worker"] = metrics["rollout_worker"]
            ray.kill(drv.rollout.actors[0], no_restart=True)

    history = _run(driver, kill_after_first)
    assert [h["iteration"] for h in history] == [1, 2, 3, 4] and [h["batch_id"] for h in history] == [0, 1, 2, 3]
    assert driver.rollout_restarts == 1 and driver.restarts == 0  # only the worker was replaced, the trainer kept going
    [lost] = driver.lost_batches
    assert lost in (1, 2)
    # the lost batch was generated again, from scratch, by the replacement: nothing of the dead worker's batch is used
    assert history[lost]["rollout_worker"] != killed["worker"]
    assert all(h["rollout_worker"] == killed["worker"] for h in history[:lost])
    assert all(0 <= h["policy_lag"] <= 1 for h in history)


def test_async_config_guards(tiny_cfg):
    with pytest.raises(Exception, match="rollout.env=calculator runs in the rollout workers"):
        tiny_cfg("ppo_grpo.yaml", "rollout.env=calculator")
    with pytest.raises(Exception, match="needs algo.estimator grpo or rloo"):
        tiny_cfg("ppo_gae.yaml", "algo.mode=async", "rollout.env=calculator")
    with pytest.raises(Exception, match="algo.mode=async ships adapter versions"):
        tiny_cfg("ppo_grpo.yaml", "algo.mode=async", "lora.enabled=false", "placement.reference=actor")
    # vLLM rollouts return their log-probs now: async vLLM workers and TIS/MIS on sync vLLM rollouts are accepted
    cfg = tiny_cfg("ppo_grpo.yaml", "algo.mode=async", "rollout.backend=vllm", "algo.is_correction=tis")
    assert (cfg.algo.mode, cfg.rollout.backend, cfg.algo.is_correction) == ("async", "vllm", "tis")
    assert tiny_cfg("ppo_grpo.yaml", "rollout.backend=vllm", "algo.is_correction=mis").algo.is_correction == "mis"
    assert tiny_cfg("ppo_grpo.yaml").algo.mode == "sync" and PPODriver is not AsyncPPODriver


def test_vllm_sampled_logprobs_picks_the_sampled_token_and_refuses_missing_positions():
    from types import SimpleNamespace as Logprob  # vLLM's Logprob: .logprob (+ rank, decoded_token)

    from app.ppo.rollout import sampled_logprobs

    # logprobs=0: one entry per position (the sampled token); logprobs=k: k+1 entries, the sampled one picked by id
    positions = [{7: Logprob(logprob=-0.5)}, {3: Logprob(logprob=-2.0), 9: Logprob(logprob=-0.1)}]
    assert sampled_logprobs([7, 3], positions) == [-0.5, -2.0]
    with pytest.raises(RuntimeError, match="0 log-prob positions for 2 tokens"):
        sampled_logprobs([7, 3], None)
