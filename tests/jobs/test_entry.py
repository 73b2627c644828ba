"""Every Ray job entrypoint: a user mistake is one line and exit 2; inside `ray job submit` it joins that cluster."""

from __future__ import annotations

import importlib

import pytest

from app.config.common import RaySpec
from jobs.entry import join_submitting_cluster

JOBS = ["dpo", "eval", "ingest", "pipeline", "ppo", "reward", "serve", "sft", "tune"]


@pytest.mark.parametrize("job", JOBS)
def test_missing_config_is_one_line_and_exit_2(job, tmp_path, capsys):
    missing = tmp_path / "nope.yaml"
    rc = importlib.import_module(f"jobs.{job}").main(["--config", str(missing)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert err == [f"jobs.{job}: error: config file not found: {missing}"]


@pytest.mark.parametrize("job", ["sft", "dpo", "pipeline"])
def test_unknown_key_names_the_key(job, tmp_path, capsys):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("no_such_key: 1\n")
    assert importlib.import_module(f"jobs.{job}").main(["--config", str(cfg)]) == 2
    assert "no_such_key" in capsys.readouterr().err


class _Cfg:
    def __init__(self, address: str):
        self.ray = RaySpec(address=address)


def test_local_means_the_submitting_cluster_only_inside_a_ray_job(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    cfg = _Cfg("local")
    join_submitting_cluster(cfg)
    assert cfg.ray.address == "local"  # a plain run starts its own private cluster

    monkeypatch.setenv("RAY_ADDRESS", "http://127.0.0.1:8265")
    join_submitting_cluster(cfg)
    assert cfg.ray.address == "auto"
    explicit = _Cfg("10.0.0.5:6379")
    join_submitting_cluster(explicit)
    assert explicit.ray.address == "10.0.0.5:6379"  # an explicit address is never overridden
