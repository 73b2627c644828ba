"""Stage sequencing and the run report, with named stand-in stages (the real ones are exercised by -m slow/ray)."""

from __future__ import annotations

import pytest

from pathlib import Path

from app.config.pipeline import PipelineConfig
from app.pipeline import run as run_mod
from app.pipeline.results import DatasetRef, EvalVerdict, Promotion, RegisteredVersion, Served, TrainedModel
from app.pipeline.run import Stage, run_pipeline, summary_lines


def standin_stages(gate_passes: bool, calls: list[str]):
    """Stand-in stages that record their order, return what the real ones return (typed results), and check that
    each gets the typed result the stage before it returned."""
    manifest = {"id": "ds-1", "record_type": "sft", "rows_accepted": 9, "tokens": 900, "packing_efficiency": 0.93}
    gates = ({"name": "gsm8k", "metric": "exact_match", "value": 0.1, "threshold": 0.05, "passed": gate_passes},
             {"name": "forgetting", "metric": "general-text perplexity ratio", "value": 1.02, "threshold": 1.05,
              "passed": True, "status": "pass", "ci_low": 0.99, "ci_high": 1.04, "n": 16, "mde": 0.05, "n_needed": 12})
    lineage = {"base_model_source": "tiny:llama", "base_sha": "ab" * 32, "dataset_id": "ds-1", "config_hash": "c" * 64,
               "method": "lora", "lora": {"r": 8}, "metrics": {}, "created_at": "now"}
    data = DatasetRef(id="ds-1", path=Path("/nowhere"), record_type="sft", manifest=manifest)
    adapter = TrainedModel(stage="sft", path=Path("/nowhere/adapter"), run_id="sft-1", lineage=lineage, data=data,
                           losses=((1, 2.0), (2, 1.5), (3, 1.2)))
    version = RegisteredVersion(tenant="default", name="m", version=1, uri="/nowhere/adapter")
    verdict = EvalVerdict(gates=gates, decision={}, metrics={"ppl_base": 3.21, "ppl_adapter": 2.5, "ppl_tokens": 640.0,
                                                             "gsm8k_em_base": 0.0, "gsm8k_em_adapter": 0.125},
                          report_path=Path("/nowhere/eval.md"), passed=gate_passes, detail="gate gsm8k failed")

    def stage(name, result, expect=()):
        def fn(ctx, got):
            calls.append(name)
            for role, value in expect:  # the next stage is handed the very object the earlier one returned
                assert getattr(got, role) is value, (name, role)
            return result
        return fn

    return [
        Stage("ingest", True, stage("ingest", data), ("dataset",)),
        Stage("sft", True, stage("sft", adapter, [("dataset", data)]), ("sft", "model")),
        Stage("dpo", False, stage("dpo", None), ("model",)),
        Stage("register", True, stage("register", version, [("model", adapter)]), ("version",)),
        Stage("eval", True, stage("eval", verdict, [("version", version)]), ("verdict",)),
        Stage("promote", True, stage("promote", Promotion(promoted=True, version=version),
                                     [("version", version), ("verdict", verdict)]), ("promotion",)),
        Stage("serve", True, stage("serve", Served(url="http://x", model="m", sample_response="72")), ("served",)),
    ]


@pytest.mark.parametrize("gate_passes", [True, False])
def test_pipeline_sequences_stages_and_writes_report(tmp_path, monkeypatch, gate_passes):
    calls: list[str] = []
    monkeypatch.setattr(run_mod, "plan", lambda cfg: standin_stages(gate_passes, calls))
    result = run_pipeline(PipelineConfig(name="t"), report_dir=tmp_path)
    assert result.ok is gate_passes
    expected = ["ingest", "sft", "register", "eval"] + (["promote", "serve"] if gate_passes else [])
    assert calls == expected  # a failed gate stops before promote/serve
    statuses = {r.name: r.status for r in result.results}
    assert statuses["dpo"] == "skipped"
    assert statuses["promote"] == ("ok" if gate_passes else "stopped")
    report = result.report_path.read_text()
    assert "| packing_efficiency | 0.93 |" in report and "![loss curves](loss_curves.png)" in report
    assert ("**PASS**" if gate_passes else "**FAIL**") in report
    # every gate states its interval and suite size: n used, n needed for the suite's minimum detectable effect
    assert "| forgetting | 1.02 [0.99, 1.04] | 1.05 | 16 | 12 (0.05) | pass |" in report
    assert f"| gsm8k | 0.1 | 0.05 |  |  | {'pass' if gate_passes else 'FAIL'} | exact_match |" in report
    assert (tmp_path / "loss_curves.png").stat().st_size > 1000 and (tmp_path / "lineage.png").is_file()
    assert ("> **response:** 72" in report) is gate_passes
    assert str(result.report_path) in summary_lines(result)[-1]
    # the learning result: base vs adapter on held-out data, in the report and in the printed summary
    assert "| held-out perplexity (GSM8K test answers) | 3.210 | 2.500 | 640 tokens |" in report
    assert "| GSM8K exact match | 0.000 | 0.125 |" in report
    assert "  held-out perplexity: base 3.210 -> adapter 2.500" in summary_lines(result)
    # the flat view the job store reads (app/commands/pipeline.py) keeps its keys
    assert result.outputs["adapter_path"] == "/nowhere/adapter" and result.outputs["registry_model"] == "m"
    assert result.products.model.run_id == "sft-1" and result.results[1].value is result.products.sft


def test_a_stage_returning_the_wrong_type_fails_the_run(tmp_path, monkeypatch):
    """A stage that hands on a dict of strings (the old way) instead of its typed result stops the run there."""
    calls: list[str] = []
    plan = standin_stages(True, calls)
    plan[1] = Stage("sft", True, lambda ctx, got: {"adapter_path": "/nowhere/adapter"}, ("sft", "model"))
    monkeypatch.setattr(run_mod, "plan", lambda cfg: plan)
    with pytest.raises(TypeError, match="returned dict, expected TrainedModel"):
        run_pipeline(PipelineConfig(name="t"), report_dir=tmp_path)
    assert calls == ["ingest"]
    report = (tmp_path / "report.md").read_text()
    assert "| sft | failed |" in report and "| register | stopped |" in report


def test_failing_stage_is_reported_then_raised(tmp_path, monkeypatch):
    def boom(ctx):
        raise RuntimeError("disk full")

    stages = [Stage("ingest", True, lambda ctx, got: boom(ctx), ("dataset",)),
              Stage("sft", True, lambda ctx, got: {}, ("sft",))]
    monkeypatch.setattr(run_mod, "plan", lambda cfg: stages)
    with pytest.raises(RuntimeError, match="disk full"):
        run_pipeline(PipelineConfig(name="t"), report_dir=tmp_path)
    report = (tmp_path / "report.md").read_text()
    assert "| ingest | failed |" in report and "disk full" in report and "| sft | stopped |" in report


def test_a_typo_in_a_stage_config_fails_before_anything_runs(tmp_path, monkeypatch):
    from app.config.errors import ConfigError
    from app.config.loader import load_config

    calls: list[str] = []
    monkeypatch.setattr(run_mod, "plan", lambda cfg: standin_stages(True, calls))
    cfg = load_config("configs/tiny/pipeline_smoke.yaml", PipelineConfig, ["sft.overrides=[train.bogus=1]"])
    with pytest.raises(ConfigError, match="train.bogus"):
        run_pipeline(cfg, report_dir=tmp_path / "r")
    assert calls == [] and not (tmp_path / "r").exists()
