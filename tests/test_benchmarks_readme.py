"""benchmarks/README.md is generated from benchmarks/results/*.json: a hand edit or a stale copy fails here."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
report = runpy.run_path(str(ROOT / "benchmarks" / "report.py"))


def test_checked_in_readme_is_the_generated_one():
    current = (ROOT / "benchmarks" / "README.md").read_text(encoding="utf-8")
    assert current == report["render"](), "benchmarks/README.md is stale: run python benchmarks/report.py"


def test_a_changed_number_changes_the_page(tmp_path: Path):
    (tmp_path / "speed.json").write_text(json.dumps({"tokens_per_s": 100.0, "runs": {"a": 1}}))
    before = report["render"](tmp_path)
    assert "| `tokens_per_s` | 100 |" in before and "| `runs.a` | 1 |" in before
    (tmp_path / "speed.json").write_text(json.dumps({"tokens_per_s": 250.5, "runs": {"a": 1}}))
    after = report["render"](tmp_path)
    assert after != before and "| `tokens_per_s` | 250.5 |" in after


def test_long_lists_are_summarised(tmp_path: Path):
    (tmp_path / "curve.json").write_text(json.dumps({"loss": list(range(20)), "pair": [1, 2]}))
    page = report["render"](tmp_path)
    assert "| `loss` | [20 values] |" in page and "| `pair` | 1, 2 |" in page
