"""`rayalign registry …` end to end on a SQLite file, and the MLflow model-registry mirror (aliases follow stages)."""

from __future__ import annotations

import json

import argparse

import pytest

from app.commands import registry as registry_cmd
from app.registry import RegistryError


def main(argv: list[str]) -> int:
    """The `rayalign registry` verb without building every other verb's parser (their imports are heavy)."""
    parser = argparse.ArgumentParser()
    registry_cmd.add_arguments(parser)
    return registry_cmd.run(parser.parse_args(argv[1:]))

PASS = {"passed": True, "decided_by": None, "reason": "all gates passed", "outcomes": []}


def test_registry_cli_round_trip(tmp_path, make_adapter, capsys):
    from app.registry import Registry

    url = f"sqlite:///{tmp_path / 'cli.db'}"
    base = ["registry", "--url", url, "--tenant", "acme"]
    assert main(base + ["register", str(make_adapter("one")), "--name", "math"]) == 0
    assert "registered acme/math@v1" in capsys.readouterr().out
    with pytest.raises(RegistryError, match="eval gates never evaluated"):  # a ConfigError: CLI prints one line, exit 2
        main(base + ["promote", "math", "1"])
    reg = Registry(url)
    reg.record_eval("acme", "math", 1, {"ppl": 2.0}, PASS)
    reg.close()
    assert main(base + ["promote", "math", "1"]) == 0
    assert main(base + ["list"]) == 0
    out = capsys.readouterr().out
    assert "production" in out and "gate=pass" in out
    assert main(base + ["show", "math", "1"]) == 0
    lineage = json.loads(capsys.readouterr().out)
    assert lineage["artifact"]["base_sha"] == "a" * 64 and lineage["history"][-1]["to"] == "production"
    assert main(base + ["base", "bundled:smollm2-135m-instruct", "--sha", "f" * 64]) == 0
    assert "1 artifact(s) need re-evaluation" in capsys.readouterr().out
    with pytest.raises(RegistryError, match="refusing to serve"):
        main(base + ["resolve", "math", "--base-sha", "f" * 64])
    assert main(["registry", "--url", url, "--tenant", "globex", "list"]) == 0
    assert "(no artifacts for tenant globex)" in capsys.readouterr().out


def test_mlflow_mirror_aliases_follow_stages(tmp_path, make_adapter):
    from mlflow import MlflowClient

    from app.config.common import TrackingSpec
    from app.registry import Registry

    tracking = TrackingSpec(mlflow_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", experiment="registry-test")
    reg = Registry(f"sqlite:///{tmp_path / 'reg.db'}", mlflow=tracking)
    v1 = reg.register_adapter("acme", "math", str(make_adapter("m1")))
    v2 = reg.register_adapter("acme", "math", str(make_adapter("m2")))
    assert (v1.mlflow_version, v2.mlflow_version) == ("1", "2")
    for v in (1, 2):
        reg.record_eval("acme", "math", v, {"ppl": 2.0}, PASS)
    client = MlflowClient(tracking.mlflow_uri)
    reg.promote("acme", "math", 1, "staging")
    assert str(client.get_model_version_by_alias("acme.math", "staging").version) == "1"
    reg.promote("acme", "math", 1)
    reg.promote("acme", "math", 2)
    assert str(client.get_model_version_by_alias("acme.math", "production").version) == "2"
    reg.rollback("acme", "math")
    assert str(client.get_model_version_by_alias("acme.math", "production").version) == "1"
    # the registered version really holds the adapter folder
    mv = client.get_model_version("acme.math", "1")
    import mlflow

    local = mlflow.artifacts.download_artifacts(f"models:/acme.math/{mv.version}", dst_path=str(tmp_path / "dl"))
    assert any(p.name == "rayalign_lineage.json" for p in __import__("pathlib").Path(local).rglob("*"))
    reg.close()
