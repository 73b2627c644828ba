from __future__ import annotations

import pytest

from app.config.common import RaySpec
from app.launch.runtime import run_name_for, storage_root, validate_run_name


@pytest.mark.ray
def test_local_cluster_runs_tasks(ray_local):
    @ray_local.remote(num_cpus=0.5)
    def square(x):
        return x * x

    assert ray_local.get([square.remote(i) for i in range(4)]) == [0, 1, 4, 9]
    assert ray_local.cluster_resources()["CPU"] == 2


def test_storage_root_defaults_under_home_and_accepts_uris(rayalign_home, tmp_path):
    assert storage_root() == str(rayalign_home / "runs")
    assert storage_root(RaySpec(storage_path="s3://bucket/prefix/")) == "s3://bucket/prefix"
    assert storage_root(RaySpec(storage_path=str(tmp_path / "r"))) == str(tmp_path / "r")


@pytest.mark.parametrize("bad", ["../escape", "a/b", "", ".", "..", "x" * 200, "name with space"])
def test_run_names_are_single_safe_segments(bad):
    with pytest.raises(ValueError, match="invalid run name"):
        validate_run_name(bad)


def test_run_name_derives_from_config_hash():
    assert run_name_for("sft", "abcdef0123456789") == "sft-abcdef0123"
    assert run_name_for("sft", "abcdef0123456789", RaySpec(run_name="mine")) == "mine"


def test_lean_local_cluster_turns_off_dashboard_metrics_and_event_stats(monkeypatch):
    from app.launch.runtime import LEAN_SYSTEM_CONFIG, ray_init_kwargs

    monkeypatch.setenv("RAYALIGN_DASHBOARD", "1")
    lean = ray_init_kwargs(RaySpec(lean=True, num_cpus=2))
    assert lean["include_dashboard"] is False and lean["num_cpus"] == 2
    assert lean["_system_config"] == {"enable_metrics_collection": False, "event_stats": False} == LEAN_SYSTEM_CONFIG
    default = ray_init_kwargs(RaySpec())
    assert default["include_dashboard"] is True and "_system_config" not in default
    # a caller's own system config keys win over the lean ones; joining a cluster never passes local-only keys
    mixed = ray_init_kwargs(RaySpec(lean=True), {"_system_config": {"event_stats": True}})
    assert mixed["_system_config"] == {"enable_metrics_collection": False, "event_stats": True}
    joined = ray_init_kwargs(RaySpec(address="auto", lean=True))
    assert "_system_config" not in joined and "include_dashboard" not in joined


def test_private_local_cluster_env_drops_the_preemption_watcher_joining_changes_nothing():
    from ray.train.v2._internal.constants import ENABLE_PREEMPTION_WATCHER_ENV_VAR, ENV_VARS_TO_PROPAGATE

    from app.launch.runtime import cluster_env

    local = cluster_env(RaySpec(lean=True))
    # the name Ray Train reads in its controller, and hands from the driver's environment to it
    assert local[ENABLE_PREEMPTION_WATCHER_ENV_VAR] == "0" and ENABLE_PREEMPTION_WATCHER_ENV_VAR in ENV_VARS_TO_PROPAGATE
    assert local["RAY_worker_niceness"] == "0" and local["RAY_USAGE_STATS_ENABLED"] == "0"
    assert "RAY_USAGE_STATS_ENABLED" not in cluster_env(RaySpec(lean=False))
    assert cluster_env(RaySpec(address="auto")) == {}


def test_lean_local_cluster_turns_off_ray_train_metrics():
    from ray.train.v2._internal.constants import METRICS_ENABLED_ENV_VAR

    from app.launch.runtime import cluster_env

    # the name Ray Train's driver-side trainer reads before it adds its metrics callbacks
    assert cluster_env(RaySpec(lean=True))[METRICS_ENABLED_ENV_VAR] == "0"
    assert METRICS_ENABLED_ENV_VAR not in cluster_env(RaySpec(lean=False))
    assert METRICS_ENABLED_ENV_VAR not in cluster_env(RaySpec(address="auto", lean=True))
