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
