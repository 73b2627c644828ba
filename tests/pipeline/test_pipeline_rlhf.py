"""The RLHF chain for real on the tiny model (configs/tiny/pipeline_rlhf.yaml): ingest -> SFT -> reward model ->
GRPO from the SFT adapter scored by that reward model -> register -> gates -> promote -> Serve. Three ingests,
three Ray Train/actor-group runs and Serve: opt in with ``pytest -m e2e tests/pipeline/test_pipeline_rlhf.py``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = [pytest.mark.ray, pytest.mark.e2e]


def test_rlhf_pipeline_runs_and_the_ppo_adapter_names_its_parents(tmp_path):
    from app.config.loader import load_config
    from app.config.pipeline import PipelineConfig
    from app.pipeline.run import run_pipeline, summary_lines

    cfg = load_config("configs/tiny/pipeline_rlhf.yaml", PipelineConfig, [
        f"job.db_url=sqlite:///{tmp_path / 'registry.db'}",
        f"reward.ingest.overrides=[output_dir={tmp_path / 'datasets'}]",
        f"preference.ingest.overrides=[output_dir={tmp_path / 'datasets'}]",
        "serve.overrides=[http.port=8479]",
    ])
    result = run_pipeline(cfg, report_dir=tmp_path / "report")
    print("\n".join(summary_lines(result)))
    statuses = {r.name: r.status for r in result.results}
    for stage in ("ingest", "sft", "reward", "ppo", "register", "eval", "promote"):
        assert statuses[stage] == "ok", statuses
    out = result.outputs
    lineage = json.loads((Path(out["adapter_path"]) / "rayalign_lineage.json").read_text())
    parents = lineage["parents"]
    assert lineage["method"] == "grpo"
    assert parents["init_adapter"]["path"] == str(Path(out["sft_adapter_path"]).resolve())
    assert parents["init_adapter"]["dataset_id"] == out["dataset_id"]  # the SFT dataset
    assert parents["reward_model"]["path"] == str(Path(out["reward_model_path"]).resolve())
    assert parents["reward_model"]["dataset_id"] == out["preference_dataset_id"]  # the RM's pairs
    assert "rm_score" in lineage["metrics"] and "rule_score" in lineage["metrics"]
    assert len(out["loss_histories"]["ppo"]) == 2 and out["loss_histories"]["reward"]
