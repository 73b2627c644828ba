"""An API job request becomes a valid pipeline config with fixed run names (so a re-run resumes)."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.config.loader import validate_config
from app.config.paths import REPO_ROOT
from app.config.pipeline import PipelineConfig
from app.pipeline.job_config import HYPER_KEYS, pipeline_for_job


def job(method="lora", **hyper):
    return {"id": "ftjob-0123456789abcdef0123", "tenant": "alpha",
            "request": {"base_model": "tiny:llama", "training_file": "file-x", "method": method,
                        "hyperparameters": {"max_steps": 7, "checkpoint_every": 3, **hyper}, "eval_config": {}}}


def test_lora_job_pipeline(tmp_path):
    data = pipeline_for_job(job(), {"training_file": "/f/train.jsonl"}, tmp_path, "sqlite:///x.db",
                            REPO_ROOT / "configs/tiny/pipeline_job.yaml")
    cfg = validate_config(data, PipelineConfig)
    assert cfg.model.source == "tiny:llama" and cfg.ray.address == "auto" and not cfg.serve.enabled
    assert "train.max_steps=7" in cfg.sft.overrides and "checkpoint.every_steps=3" in cfg.sft.overrides
    assert f"ray.run_name={job()['id']}-sft" in cfg.sft.overrides
    assert cfg.job.job_id == job()["id"] and cfg.promote.name == "ft-0123456789abcdef0123"
    assert cfg.promote.tenant == "alpha"  # the adapter is the job owner's: GET /v1/models filters by tenant
    assert any("'/f/train.jsonl'" in o for o in cfg.ingest.overrides)
    # same job, same config: a re-queued attempt re-runs the same Ray Train run (and resumes)
    assert pipeline_for_job(job(), {"training_file": "/f/train.jsonl"}, tmp_path, "sqlite:///x.db",
                            REPO_ROOT / "configs/tiny/pipeline_job.yaml") == data


@pytest.mark.parametrize("method", ["dpo", "ppo", "reward"])
def test_preference_methods_enable_that_stage(tmp_path, method):
    data = pipeline_for_job(job(method), {"training_file": "/f/p.jsonl"}, tmp_path, "sqlite:///x.db",
                            REPO_ROOT / "configs/tiny/pipeline_job.yaml")
    cfg = validate_config(data, PipelineConfig)
    assert cfg.preference.enabled and cfg.preference.method == method


def test_every_request_knob_maps_to_a_real_sft_key():
    from app.config.sft import SFTConfig

    for key in HYPER_KEYS.values():
        node = SFTConfig
        for part in key.split("."):
            field = node.model_fields[part]
            node = field.annotation


def test_every_request_knob_maps_to_a_real_dpo_key():
    from app.config.dpo import DPOConfig
    from app.pipeline.job_config import PREFERENCE_HYPER_KEYS

    assert set(PREFERENCE_HYPER_KEYS) == set(HYPER_KEYS) | {"beta"}
    for key in PREFERENCE_HYPER_KEYS.values():
        node = DPOConfig
        for part in key.split("."):
            node = node.model_fields[part].annotation


def test_processed_upload_is_reused_instead_of_ingesting_again(tmp_path):
    data = pipeline_for_job(job(), {"training_file": "/f/train.jsonl"}, tmp_path, "sqlite:///x.db",
                            REPO_ROOT / "configs/tiny/pipeline_job.yaml", dataset="/d/file-1")
    assert validate_config(data, PipelineConfig).dataset == "/d/file-1"


def test_reward_and_ppo_jobs_get_their_stage_configs_and_knobs(tmp_path):
    from app.config.loader import load_config
    from app.config.ppo import PPOConfig
    from app.config.reward import RewardConfig

    reward = validate_config(pipeline_for_job(job("reward"), {"training_file": "/f/pairs.jsonl"}, tmp_path, "sqlite:///x.db",
                                              REPO_ROOT / "configs/tiny/pipeline_job.yaml"), PipelineConfig)
    assert reward.preference.config == "configs/tiny/reward_lora.yaml" and reward.ingest.enabled
    rcfg = load_config(REPO_ROOT / reward.preference.config, RewardConfig, reward.preference.overrides)
    assert rcfg.train.max_steps == 7
    data = pipeline_for_job(job("ppo", learning_rate=0.01) | {"request": {**job("ppo", learning_rate=0.01)["request"], "reward_model": "ft-rm"}}, {"training_file": "/f/q.jsonl"}, tmp_path,
                            "sqlite:///x.db", REPO_ROOT / "configs/tiny/pipeline_job.yaml", reward_model_path="/r/rm")
    req = data["preference"]
    assert not data["ingest"]["enabled"] and data["dataset"] is None  # prompts are read from the upload itself
    ppo = validate_config(data, PipelineConfig)
    assert ppo.preference.config == "configs/tiny/ppo_grpo.yaml"
    cfg = load_config(REPO_ROOT / ppo.preference.config, PPOConfig, req["overrides"])
    assert cfg.reward.kind == "model" and cfg.reward.model_path == "/r/rm"
    assert cfg.run.iterations == 7 and cfg.algo.lr == 0.01 and cfg.prompts.path == "/f/q.jsonl"


def test_ppo_job_reward_source_becomes_reward_keys(tmp_path):
    from app.pipeline.job_config import ppo_reward_overrides

    assert ppo_reward_overrides({"reward_model": "ft-rm"}, "/r/rm") == ["reward.kind=model", "reward.model_path=/r/rm"]
    assert ppo_reward_overrides({"reward_model": "ft-rm", "reward_rule": "gsm8k"}, "/r/rm") == [
        "reward.kind=sum", "reward.rule=gsm8k", "reward.rule_weight=0", "reward.model_path=/r/rm"]
    assert ppo_reward_overrides({"reward_rule": "exact_match"}, None) == ["reward.kind=rule", "reward.rule=exact_match"]
    with pytest.raises(ValueError, match="'ft-rm' is no longer registered"):
        ppo_reward_overrides({"reward_model": "ft-rm"}, None)


def test_epochs_beta_and_validation_file_reach_the_stage_configs(tmp_path):
    """OpenAI's n_epochs (epochs, no step cap), DPO beta, and validation_file as the eval stage's held-out set."""
    import json

    from app.config.dpo import DPOConfig
    from app.config.loader import load_config
    from app.pipeline.job_config import heldout_from_validation

    val = tmp_path / "val.jsonl"
    val.write_text(json.dumps({"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]})
                   + "\n" + json.dumps({"input": {"messages": [{"role": "user", "content": "hi"}]},
                                        "preferred_output": [{"role": "assistant", "content": "hello"}],
                                        "non_preferred_output": [{"role": "assistant", "content": "no"}]}) + "\n")
    heldout = heldout_from_validation(val, tmp_path / "heldout.jsonl")
    assert [json.loads(l) for l in heldout.read_text().splitlines()] == [
        {"question": "2+2?", "answer": "4"}, {"question": "hi", "answer": "hello"}]
    j = job("dpo")
    j["request"]["hyperparameters"] = {"epochs": 3, "beta": 0.3}
    data = pipeline_for_job(j, {"training_file": "/f/p.jsonl"}, tmp_path, "sqlite:///x.db",
                            REPO_ROOT / "configs/tiny/pipeline_job.yaml", heldout=heldout)
    cfg = validate_config(data, PipelineConfig)
    assert cfg.eval.enabled and f"data.heldout={heldout}" in cfg.eval.overrides
    dcfg = load_config(REPO_ROOT / cfg.preference.config, DPOConfig, cfg.preference.overrides)
    assert dcfg.train.epochs == 3 and dcfg.train.max_steps is None and dcfg.dpo.beta == 0.3
    j["request"]["hyperparameters"] = {"beta": 0.3}
    j["request"]["method"] = "lora"
    with pytest.raises(ValueError, match="hyperparameters.beta"):
        pipeline_for_job(j, {"training_file": "/f/p.jsonl"}, tmp_path, "sqlite:///x.db",
                         REPO_ROOT / "configs/tiny/pipeline_job.yaml")
