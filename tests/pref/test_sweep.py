"""A 4-trial lr x rank DPO sweep with ASHA on real Ray Tune (tiny model): every trial in MLflow, best adapter kept."""

from __future__ import annotations

import csv
import json
import os

import pytest

from app.config.errors import ConfigError
from app.config.paths import REPO_ROOT
from app.config.sweep import SweepConfig


def test_trial_configs_are_revalidated_through_the_job_schema(tmp_path):
    from app.launch.tune import load_sweep, trial_config

    sweep = load_sweep(REPO_ROOT / "configs" / "tiny" / "sweep_dpo.yaml")
    cfg = trial_config(sweep, {"optim.lr": 0.002, "lora.r": 8})
    assert cfg.optim.lr == 0.002 and cfg.lora.r == 8 and cfg.train.max_steps == 6
    with pytest.raises(ConfigError, match="lora.r"):
        trial_config(sweep, {"lora.r": 0})  # a sampled value the schema refuses fails loudly
    with pytest.raises(ConfigError, match="unknown key"):
        trial_config(sweep, {"optim.learning_rate": 0.1})
    with pytest.raises(ValueError, match="grid"):
        SweepConfig(base_config="x.yaml", search="grid", search_space={"optim.lr": {"kind": "loguniform", "low": 1e-5, "high": 1e-3}})


@pytest.mark.ray
@pytest.mark.e2e  # 4 TorchTrainer trials: minutes on 2 cores; opt in with -m e2e
def test_tiny_sweep_runs_all_trials_with_asha_and_mlflow(ray_local, tiny_preference_artifact, tmp_path):
    from mlflow.tracking import MlflowClient

    from app.launch.tune import load_sweep, run_sweep
    from app.tracking.mlflow_store import configure_mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    sweep = load_sweep(REPO_ROOT / "configs" / "tiny" / "sweep_dpo.yaml", [
        f"output_dir={tmp_path / 'sweep'}", f"ray.storage_path={tmp_path / 'runs'}", f"tracking.mlflow_uri={uri}",
        "tracking.experiment=sweep-test",
    ])
    # a RELATIVE artifact path, as configs/ and the README use: Tune must not chdir the trials away from it
    artifact = os.path.relpath(tiny_preference_artifact)
    sweep = sweep.model_copy(update={"overrides": [*sweep.overrides, f"data.artifact={artifact}",
                                                  f"tracking.mlflow_uri={uri}", "tracking.enabled=true", "tracking.experiment=sweep-test"]})
    summary = run_sweep(SweepConfig.model_validate(sweep.model_dump()))
    out = tmp_path / "sweep"
    assert summary["trials"] == 4
    # ASHA stops trials at its rungs (2, 4); a stopped trial is a clean outcome, never an error. With 2 trials at a
    # time, the lr 1e-3 trials reach rung 2 only after an lr 5e-3 trial has recorded a lower loss there.
    assert summary["statuses"]["error"] == 0 and summary["statuses"]["finished"] >= 1
    assert summary["statuses"]["stopped early"] >= 1, summary["statuses"]
    rows = (out / "results.csv").read_text().strip().splitlines()
    assert len(rows) == 5 and "optim.lr" in rows[0] and "lora.r" in rows[0]
    assert (out / "eval_loss_vs_params.png").stat().st_size > 1000
    best = json.loads((out / "best_adapter" / "rayalign_lineage.json").read_text())
    assert best["method"] == "dpo" and best["sweep"]["trial_id"] == summary["best"]["trial_id"]
    assert best["lora"]["r"] == best["sweep"]["params"]["lora.r"]
    configure_mlflow(sweep.tracking)
    client = MlflowClient()
    exp = client.get_experiment_by_name("sweep-test")
    runs = client.search_runs([exp.experiment_id])
    parent = [r for r in runs if r.info.run_id == summary["parent_run_id"]]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == summary["parent_run_id"]]
    assert len(parent) == 1 and len(children) == 4
    assert {float(c.data.params["optim.lr"]) for c in children} == {1e-3, 5e-3}
    assert all("eval_before/loss" in c.data.metrics for c in children)
    # every child run is ended with its outcome: an ASHA-stopped trial's run is KILLED, not left RUNNING
    with open(out / "results.csv", newline="") as f:
        outcome = {f"tiny-dpo-sweep-{r['trial_id']}": r["status"] for r in csv.DictReader(f)}
    for child in children:
        assert child.data.tags["rayalign.trial_status"] == outcome[child.info.run_name]
        assert child.info.status == {"finished": "FINISHED", "stopped early": "KILLED"}[outcome[child.info.run_name]]


def test_sft_sweeps_validate_through_the_sft_schema():
    """`rayalign tune` runs any method of the one engine: an SFT trial config is an SFTConfig, refused like one."""
    from app.config.sft import SFTConfig
    from app.launch.tune import load_sweep, trial_config

    sweep = load_sweep(REPO_ROOT / "configs" / "tiny" / "sweep_sft.yaml")
    cfg = trial_config(sweep, {"optim.lr": 1e-4})
    assert isinstance(cfg, SFTConfig) and cfg.optim.lr == 1e-4 and cfg.train.max_steps == 6
    with pytest.raises(ConfigError, match="unknown key"):
        trial_config(sweep, {"dpo.beta": 0.1})  # a DPO key is not an SFT key
