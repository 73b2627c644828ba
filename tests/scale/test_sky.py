"""Every sky/*.yaml loads with SkyPilot's own parser (sky.Task.from_yaml, in .venv-cloud); broken ones fail."""

from __future__ import annotations

import re

import pytest
import yaml

from app.config.paths import REPO_ROOT

SKY = sorted((REPO_ROOT / "sky").glob("*.yaml"))
BROKEN = {
    "typo-key.yaml": {"resources": {"acelerators": "A100:8"}, "run": "true"},
    "bad-type.yaml": {"resources": {"accelerators": "A100:8", "use_spot": "maybe"}, "run": "true"},
    "anyof-and-ordered.yaml": {"resources": {"any_of": [{"cloud": "aws"}], "ordered": [{"cloud": "gcp"}]}, "run": "true"},
    "bad-accelerator-count.yaml": {"resources": {"accelerators": "A100:-1"}, "run": "true"},
}


@pytest.fixture(scope="module")
def parsed(sky_parse, tmp_path_factory):
    """Parse the real task files, the broken twins and a task built from `rayalign plan`'s block in one subprocess."""
    folder = tmp_path_factory.mktemp("sky")
    broken = []
    for name, doc in BROKEN.items():
        (folder / name).write_text(yaml.safe_dump(doc))
        broken.append(folder / name)
    from app.config.plan import PlanConfig
    from app.plan.gpus import gpu
    from app.plan.model_stats import ModelStats
    from app.plan.planner import estimate_option, skypilot_resources
    from app.core.memory import TransformerShape

    stats = ModelStats("llama", 10**9, 10**9, 0, 9 * 10**8, 10**8, TransformerShape(2048, 16, 16, 5632, 32000))
    cfg = PlanConfig(method="full")
    block = skypilot_resources(estimate_option(cfg, stats, gpu("A100-80GB"), 16, "zero3", 8), cfg.hardware)
    (folder / "from-plan.yaml").write_text(yaml.safe_dump({**block, "run": "echo planned"}))
    results = sky_parse([*SKY, *broken, folder / "from-plan.yaml"])
    return results, folder


def _result(parsed, path):
    results, _ = parsed
    return results[str(path)]


@pytest.mark.parametrize("path", SKY, ids=lambda p: p.name)
def test_sky_yaml_parses_with_skypilot(path, parsed):
    result = _result(parsed, path)
    assert result["ok"], result.get("error")
    assert "bash .ci/env" in result["setup"]  # the README command installs the project


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_sky_yaml_fails(name, parsed):
    _, folder = parsed
    result = _result(parsed, folder / name)
    assert not result["ok"], f"SkyPilot accepted a broken task: {name}"


def test_ray_cluster_task_keeps_off_skypilots_internal_ray(parsed):
    r = _result(parsed, REPO_ROOT / "sky" / "ray_cluster.yaml")
    assert r["num_nodes"] >= 2
    ports = {int(r["envs"]["RAY_GCS_PORT"]), int(r["envs"]["RAY_DASHBOARD_PORT"])}
    assert not ports & {6380, 8266}  # SkyPilot's own Ray GCS and dashboard ports
    run = r["run"]
    assert "SKYPILOT_NODE_RANK" in run and "SKYPILOT_NODE_IPS" in run
    assert re.search(r"(\$RAY|ray) job submit", run) and "python -m jobs.sft" in run
    assert "--dashboard-host=127.0.0.1" in run  # job submission is code execution: loopback only
    assert not re.search(r"ray\"? stop", run)  # `ray stop` would take SkyPilot's Ray down too


@pytest.mark.parametrize("name", ["train_spot.yaml", "train_burst.yaml", "train_burst_ordered.yaml"])
def test_managed_spot_jobs_resume_from_a_bucket(name, parsed):
    r = _result(parsed, REPO_ROOT / "sky" / name)
    assert True in r["use_spot"]
    assert r["job_recovery"] is not None
    assert r["envs"]["RUN_NAME"]  # fixed run name -> a relaunch resumes the same Ray Train run
    assert 'ray.storage_path="s3://$BUCKET' in r["run"] and 'ray.run_name="$RUN_NAME"' in r["run"]


def test_bursting_spans_clouds_and_falls_back_to_on_demand(parsed):
    anyof = _result(parsed, REPO_ROOT / "sky" / "train_burst.yaml")
    assert len(anyof["clouds"]) >= 2 and not anyof["ordered"]
    ordered = _result(parsed, REPO_ROOT / "sky" / "train_burst_ordered.yaml")
    assert ordered["ordered"] and ordered["use_spot"] == [False, True]


def test_serve_task_is_a_skyserve_service(parsed):
    r = _result(parsed, REPO_ROOT / "sky" / "serve.yaml")
    assert r["service"] and "serve run raycluster/serve/rayalign_serve.yaml" in r["run"]


def test_planner_block_is_a_valid_skypilot_task(parsed):
    _, folder = parsed
    r = _result(parsed, folder / "from-plan.yaml")
    assert r["ok"], r.get("error")
    assert r["num_nodes"] == 2 and r["accelerators"] == ["A100-80GB"] and r["ordered"]
