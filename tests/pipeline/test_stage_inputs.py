"""Each stage builds its job config from the earlier stages' typed results (no Ray, no model: config loading only).

If a stage ignored its typed input (trained on the YAML's dataset, started from no adapter, scored with no reward
model, evaluated another version), these fail.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from app.config.errors import ConfigError
from app.config.loader import load_config
from app.config.pipeline import PipelineConfig
from app.pipeline import stages
from app.pipeline.context import RunContext
from app.pipeline.results import DatasetRef, RegisteredVersion, TrainedModel


def ctx_for(tmp_path: Path, config: str, overrides: list[str] = ()) -> RunContext:
    return RunContext(cfg=load_config(config, PipelineConfig, list(overrides)), report_dir=tmp_path / "report")


def dataset(tmp_path: Path, record_type: str = "sft") -> DatasetRef:
    return DatasetRef(id=f"{record_type}-1", path=tmp_path / f"{record_type}-artifact", record_type=record_type)


def trained(tmp_path: Path, stage: str) -> TrainedModel:
    return TrainedModel(stage=stage, path=tmp_path / f"{stage}-out", run_id=f"{stage}-run", lineage={})


def test_sft_trains_on_the_dataset_it_is_handed(tmp_path):
    data = dataset(tmp_path)
    cfg = stages.sft_config(ctx_for(tmp_path, "configs/tiny/pipeline_smoke.yaml"), data)
    assert cfg.data.artifact == str(data.path)


def test_a_stage_override_of_a_handed_on_field_is_refused(tmp_path):
    ctx = ctx_for(tmp_path, "configs/tiny/pipeline_smoke.yaml", ["sft.overrides=[data.artifact=/elsewhere]"])
    with pytest.raises(ConfigError, match="sets data.artifact, which an earlier stage's result provides"):
        stages.sft_config(ctx, dataset(tmp_path))


def test_dpo_starts_from_the_sft_adapter_on_the_pairs(tmp_path):
    ctx = ctx_for(tmp_path, "configs/tiny/pipeline_smoke.yaml",
                  ["preference.enabled=true", "preference.config=configs/tiny/dpo_sigmoid.yaml"])
    pairs, sft = dataset(tmp_path, "preference"), trained(tmp_path, "sft")
    cfg = stages.dpo_config(ctx, sft, pairs)
    assert cfg.data.artifact == str(pairs.path) and cfg.dpo.reference_adapter == str(sft.path)
    assert stages.dpo_config(ctx, None, pairs).dpo.reference_adapter is None


def test_ppo_takes_the_sft_adapter_the_reward_model_and_the_prompts(tmp_path):
    ctx = ctx_for(tmp_path, "configs/tiny/pipeline_rlhf.yaml")
    sft, rm, prompts = trained(tmp_path, "sft"), trained(tmp_path, "reward"), dataset(tmp_path, "prompt")
    cfg = stages.ppo_config(ctx, sft, rm, prompts)
    assert (cfg.init.adapter, cfg.reward.model_path, cfg.prompts.path) == (str(sft.path), str(rm.path),
                                                                           str(prompts.path))
    with pytest.raises(ConfigError, match="reward.model_path is not set"):  # reward.kind=sum needs the RM handed on
        stages.ppo_config(ctx, sft, None, prompts)


def test_eval_judges_the_version_register_returned(tmp_path):
    ctx = ctx_for(tmp_path, "configs/tiny/pipeline_smoke.yaml", ["promote.name=other", "promote.tenant=t0"])
    version = RegisteredVersion(tenant="acme", name="math", version=7, uri=str(tmp_path))
    reg = stages.eval_config(ctx, version).registry
    assert (reg.tenant, reg.name, reg.version) == ("acme", "math", 7)
