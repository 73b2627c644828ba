"""The pipeline's optional DPO stage, for real on the tiny model: SFT adapter -> DPO on ingested pairs -> registered.

Two ingests and two Ray Train fits (~20 s fixed start-up each on 2 cores) put it over the CI budget: opt in with
``pytest -m e2e tests/pipeline/test_pipeline_dpo.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = [pytest.mark.ray, pytest.mark.e2e]


def test_dpo_stage_trains_from_the_sft_adapter_and_registers_it(tmp_path):
    from app.config.loader import load_config
    from app.config.pipeline import PipelineConfig
    from app.pipeline.run import run_pipeline, summary_lines
    from app.registry.store import Registry

    cfg = load_config("configs/tiny/pipeline_smoke.yaml", PipelineConfig, [
        "name=dpo-smoke", "promote.name=tiny-dpo", f"job.db_url=sqlite:///{tmp_path / 'registry.db'}",
        "preference.enabled=true", "preference.config=configs/tiny/dpo_sigmoid.yaml",
        "preference.overrides=[train.max_steps=3, train.epochs=3, train.micro_batch_size=1]",
        "preference.ingest.enabled=true", "preference.ingest.config=configs/tiny/ingest_preference.yaml",
        f"preference.ingest.overrides=[output_dir={tmp_path / 'datasets'}]",
        "eval.enabled=false", "serve.enabled=false",
    ])
    result = run_pipeline(cfg, report_dir=tmp_path / "report")
    print("\n".join(summary_lines(result)))
    statuses = {r.name: r.status for r in result.results}
    assert statuses["sft"] == "ok" and statuses["dpo"] == "ok" and statuses["register"] == "ok", statuses

    out = result.outputs
    lineage = json.loads((Path(out["adapter_path"]) / "rayalign_lineage.json").read_text())
    assert lineage["method"] == "dpo" and lineage["dataset_id"].startswith("preference-"), lineage
    assert lineage["dpo"]["reference_adapter"] == out["sft_adapter_path"]  # DPO started from the SFT adapter
    assert len(out["loss_histories"]["dpo"]) == 3 and len(out["loss_histories"]["sft"]) >= 2

    versions = Registry(cfg.job.db_url).list("default")
    dpo = [v for v in versions if v.name == "tiny-dpo"]
    assert len(dpo) == 1 and dpo[0].method == "dpo" and dpo[0].dataset_id == lineage["dataset_id"]
    report = result.report_path.read_text()
    assert "| dpo | 3 |" in report and "| method | dpo |" in report
