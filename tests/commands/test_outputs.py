"""`rayalign outputs`: lists what runs left in the rayalign home (a hand-built home: no Ray, no model)."""

from __future__ import annotations

import json
import os

from app.cli import main


def build_home(home):
    (home / "datasets/tiny-sft/v1").mkdir(parents=True)
    (home / "datasets/tiny-sft/v1/manifest.json").write_text(
        json.dumps({"id": "sft-abc", "record_type": "sft", "rows_accepted": 9}))
    lineage = json.dumps({"method": "lora", "dataset_id": "sft-abc"})
    (home / "outputs/tiny-sft").mkdir(parents=True)
    (home / "outputs/tiny-sft/rayalign_lineage.json").write_text(lineage)
    (home / "runs/sft-1/adapter").mkdir(parents=True)
    (home / "runs/sft-1/adapter/rayalign_lineage.json").write_text(lineage)
    (home / "runs/sft-2/checkpoint_000001").mkdir(parents=True)  # unfinished: no final adapter
    version = home / "adapters/default/.versions/tiny-sft/v1"
    version.mkdir(parents=True)
    (home / "adapters/default/tiny-sft").symlink_to(version, target_is_directory=True)
    (home / "pipelines/demo-1").mkdir(parents=True)
    (home / "pipelines/demo-1/report.md").write_text("# r\n")
    (home / "logs").mkdir()
    (home / "logs/train-1.log").write_text("x" * 2048)


def test_lists_every_kind_of_output(tmp_path, monkeypatch, capsys):
    build_home(tmp_path)
    monkeypatch.setenv("RAYALIGN_HOME", str(tmp_path))
    os.utime(tmp_path / "logs/train-1.log", (1, 1))  # the oldest: listed last
    assert main(["outputs"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"rayalign home: {tmp_path}"
    rows = {tuple(line.split()[:2]): line for line in lines[1:]}
    assert rows[("datasets", "tiny-sft/v1")].endswith("sft, 9 rows, id sft-abc")
    assert rows[("outputs", "tiny-sft")].endswith("lora on sft-abc")
    assert rows[("runs", "sft-1")].endswith("adapter adapter/: lora on sft-abc")
    assert rows[("runs", "sft-2")].endswith("no final adapter")
    assert rows[("adapters", "default/tiny-sft")].endswith("-> adapters/default/.versions/tiny-sft/v1")
    assert rows[("pipelines", "demo-1")].endswith("report.md")
    assert lines[-1].startswith("logs       train-1.log") and lines[-1].endswith("2 KiB")
    assert len(lines) == 1 + 7

    assert main(["outputs", "datasets", "--json"]) == 0
    (row,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert row["kind"] == "datasets" and row["path"] == str(tmp_path / "datasets/tiny-sft/v1")


def test_an_unknown_kind_is_refused(tmp_path, monkeypatch):
    """A ConfigError: the CLI prints it as one line and exits 2 (tests/test_cli.py checks that path)."""
    import argparse

    import pytest

    from app.commands import outputs
    from app.config.errors import ConfigError

    monkeypatch.setenv("RAYALIGN_HOME", str(tmp_path))
    with pytest.raises(ConfigError, match="unknown kind 'model' \\(one of datasets, outputs, runs"):
        outputs.run(argparse.Namespace(kinds=["model"], json=False))
