"""`rayalign dedup`: near-duplicate clusters on real Ray, kept.jsonl and clusters.jsonl contents."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.ray

BASE = "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May."


def test_dedup_cli_writes_kept_and_clusters(ray_local, tmp_path):
    from app.cli import main

    rows = [
        {"id": "a", "text": BASE},
        {"id": "b", "text": "A completely different sentence about trains leaving stations at noon."},
        {"id": "c", "text": BASE.replace("48", "49")},  # Jaccard ~0.89 with a
        {"id": "d", "text": BASE.upper() + " "},  # identical after normalization
        {"id": "e", "text": "Weng earns $12 an hour for babysitting. Yesterday she did 50 minutes."},
    ]
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out = tmp_path / "out"
    assert main(["dedup", str(src), "--text-field", "text", "--id-field", "id", "--threshold", "0.8", "--out", str(out)]) == 0
    kept = [json.loads(l)["id"] for l in open(out / "kept.jsonl")]
    assert kept == ["a", "b", "e"]
    clusters = [json.loads(l) for l in open(out / "clusters.jsonl")]
    assert clusters == [{"kept": "a", "removed": ["c", "d"], "size": 3}]


def test_dedup_cli_bad_input_is_one_line_error(tmp_path, capsys):
    from app.cli import main

    src = tmp_path / "bad.jsonl"
    src.write_text('{"text": "ok"}\n{"text": 5}\n')
    assert main(["dedup", str(src), "--out", str(tmp_path / "o")]) == 2
    assert "line 2" in capsys.readouterr().err
