"""End-to-end ingest on a real local Ray cluster with the tiny model: every row accounted for, artifact contract."""

from __future__ import annotations

import json

import pytest

from app.config.ingest import IngestConfig
from app.config.loader import load_config
from app.config.paths import REPO_ROOT
from app.data.artifact import load_artifact

pytestmark = pytest.mark.ray


def _run(cfg_path, tmp_path, **over):
    from app.data.pipeline import run_ingest

    cfg = load_config(REPO_ROOT / cfg_path, IngestConfig, [f"{k}={v}" for k, v in over.items()])
    cfg = cfg.model_copy(update={"sources": [s.model_copy(update={"path": str(REPO_ROOT / s.path)}) for s in cfg.sources]})
    return run_ingest(cfg, out_dir=tmp_path)


def test_tiny_sft_ingest_accounts_for_every_row(ray_local, tmp_path):
    art = _run("configs/tiny/ingest_sft.yaml", tmp_path / "a")
    m = art.manifest
    assert m["rows_read"] == 10
    assert m["rows_read"] == m["rows_accepted"] + m["rows_rejected"]
    assert m["rows_rejected"] == 4  # user/user chat, empty question, not JSON, instruction not a string
    assert m["exact_dups_removed"] == 1 and m["near_dups_removed"] == 1
    assert m["rows_accepted"] == m["rows_kept"] + m["exact_dups_removed"] + m["near_dups_removed"] + m["contaminated_dropped"]
    quarantine = [json.loads(l) for l in open(art.path / "quarantine.jsonl")]
    assert sorted(q["line"] for q in quarantine) == [7, 8, 9, 10]
    assert all(q["source"].endswith("sft_mixed.jsonl") and q["field"] and q["reason"] for q in quarantine)
    clusters = [json.loads(l) for l in open(art.path / "clusters.jsonl")]
    assert clusters == [{"kept": {"source": clusters[0]["kept"]["source"], "line": 1},
                         "removed": [{"source": clusters[0]["kept"]["source"], "line": 6}]}]
    assert (art.path / "length_hist.png").stat().st_size > 1000

    loaded = load_artifact(art.path)
    assert loaded.id == art.id and loaded.record_type == "sft" and art.id.startswith("sft-")
    table = loaded.read_table("train").to_pylist()
    assert sum(r["seq_len"] for r in table) == m["tokens"]
    for r in table:
        assert len(r["input_ids"]) == len(r["labels"]) == len(r["position_ids"]) == r["seq_len"] <= 128
        starts = [i for i, p in enumerate(r["position_ids"]) if p == 0]
        assert starts[0] == 0 and all(r["labels"][s] == -100 for s in starts)
    assert len(table) < m["rows_kept"]  # 4 short examples packed into fewer windows

    again = _run("configs/tiny/ingest_sft.yaml", tmp_path / "b")
    assert again.id == art.id  # same input, same settings -> same content id
    same = _run("configs/tiny/ingest_sft.yaml", tmp_path / "a")
    assert same.path == art.path  # ... and re-ingesting into the same place rewrites nothing
    changed = _run("configs/tiny/ingest_sft.yaml", tmp_path / "a", max_length=96)
    assert changed.id != art.id and changed.path.name == "v2" and art.path.name == "v1"
    assert load_artifact(art.path).read_table("train").num_rows == len(table)  # the old version still loads
    assert load_artifact(changed.path.parent).id == changed.id  # the name resolves to the newest version


def test_tiny_preference_and_prompt_records(ray_local, tmp_path):
    pref = _run("configs/tiny/ingest_preference.yaml", tmp_path)
    assert pref.manifest["rows_read"] == 6 and pref.manifest["rows_rejected"] == 3
    rows = pref.read_table().to_pylist()
    assert len(rows) == 3
    for r in rows:
        for side in ("chosen", "rejected"):
            ids, labels = r[f"{side}_input_ids"], r[f"{side}_labels"]
            trained = [i for i, l in enumerate(labels) if l != -100]
            assert trained == list(range(trained[0], trained[-1] + 1))  # one block: the final response + end token
            assert [labels[i] for i in trained] == [ids[i] for i in trained]
            assert len(ids) - trained[-1] <= 2  # only the newline after the end-of-turn token follows
            assert r["prompt"].endswith("<|im_start|>assistant\n")

    prompts = _run("configs/tiny/ingest_prompt.yaml", tmp_path)
    assert prompts.manifest["rows_read"] == 5 and prompts.manifest["rows_rejected"] == 2
    rows = prompts.read_table().to_pylist()
    assert [r["reference"] for r in rows] == ["6", "", "Paris"]
    assert json.loads(rows[2]["messages"])[0] == {"role": "system", "content": "You are terse."}
