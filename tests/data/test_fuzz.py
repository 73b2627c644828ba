"""Fuzz: 10,000 rows mixing every malformed kind, spread over JSONL, JSONL.gz, Parquet and a saved HF dataset.

No crash; accepted + rejected == 10,000; every rejection names a source, a line, a field and a reason.
"""

from __future__ import annotations

import gzip
import json
import random

import pytest

from app.config.ingest import IngestConfig

pytestmark = pytest.mark.ray

GOOD = [
    lambda r: {"question": f"Q{r.random()} how many?", "answer": f"so {r.randint(0, 99)}\n#### {r.randint(0, 99)}"},
    lambda r: {"messages": [{"role": "user", "content": f"hi {r.random()}"}, {"role": "assistant", "content": "hello"}]},
    lambda r: {"instruction": f"say {r.random()}", "input": "", "response": "ok"},
    lambda r: {"prompt": f"p {r.random()}", "completion": "c"},
]
BAD_LINES = [
    lambda r: b"\xff\xfe\xfa bad utf8",
    lambda r: b'{"question": "unterminated',
    lambda r: b"[1, 2, 3]",
    lambda r: b"null",
    lambda r: json.dumps({"question": "", "answer": "a"}).encode(),
    lambda r: json.dumps({"question": 7, "answer": "a"}).encode(),
    lambda r: json.dumps({"question": "q"}).encode(),
    lambda r: json.dumps({"messages": []}).encode(),
    lambda r: json.dumps({"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]}).encode(),
    lambda r: json.dumps({"messages": [{"role": "user", "content": "a"}, {"role": "system", "content": "s"}, {"role": "assistant", "content": "b"}]}).encode(),
    lambda r: json.dumps({"messages": [{"role": "user", "content": "only user"}]}).encode(),
    lambda r: json.dumps({"messages": [{"role": "wizard", "content": "x"}]}).encode(),
    lambda r: json.dumps({"messages": [{"role": "user"}]}).encode(),
    lambda r: json.dumps({"instruction": ["not", "str"], "response": "x"}).encode(),
    lambda r: b'{"instruction": "x", "response": "\\ud800"}',
    lambda r: json.dumps({"unknown": "keys"}).encode(),
    lambda r: json.dumps({"question": "long " * 400, "answer": "#### 1"}).encode(),  # > max_length with reject policy
]


def test_fuzz_10000_rows(ray_local, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    from datasets import Dataset

    from app.data.pipeline import run_ingest

    rng = random.Random(0)
    lines, expected_bad = [], 0
    for i in range(8_000):  # JSONL rows; the other 2,000 come from Parquet + the HF folder below
        if rng.random() < 0.5:
            lines.append(rng.choice(BAD_LINES)(rng))
            expected_bad += 1
        else:
            lines.append(json.dumps(rng.choice(GOOD)(rng)).encode())
    # 4 files: plain JSONL, gzipped JSONL, Parquet (good rows + rows with wrong types), HF save_to_disk folder
    (tmp_path / "a.jsonl").write_bytes(b"\n".join(lines[:4000]) + b"\n")
    with gzip.open(tmp_path / "b.jsonl.gz", "wb") as fh:
        fh.write(b"\n\n".join(lines[4000:]))  # blank lines in between are not rows
    table_rows = [{"question": f"q{i}?" if i % 3 else "", "answer": f"a\n#### {i}"} for i in range(1000)]
    pq.write_table(pa.Table.from_pylist(table_rows), tmp_path / "c.parquet")
    Dataset.from_list(table_rows).save_to_disk(str(tmp_path / "hf"))
    n_rows = 8000 + 2000
    expected_bad += 2 * sum(1 for r in table_rows if not r["question"])

    cfg = IngestConfig(
        name="fuzz", record_type="sft", model={"source": "tiny:llama"}, max_length=256, length_policy="reject",
        sources=[{"path": str(tmp_path / "*.jsonl*")}, {"path": str(tmp_path / "c.parquet")}, {"path": str(tmp_path / "hf")}],
        dedup={"near": False},
    )
    art = run_ingest(cfg, out_dir=tmp_path / "out")
    m = art.manifest
    assert m["rows_read"] == n_rows == 10_000
    assert m["rows_accepted"] + m["rows_rejected"] == 10_000
    assert m["rows_rejected"] == expected_bad
    quarantine = [json.loads(l) for l in open(art.path / "quarantine.jsonl")]
    assert len(quarantine) == m["rows_rejected"]
    assert all(q["source"] and q["line"] >= 1 and q["field"] and q["reason"] for q in quarantine)
    assert not [q for q in quarantine if q["reason"].startswith("unexpected")]  # every kind is a known rejection
    assert {f["path"].rsplit("/", 1)[-1] for f in m["source_files"]} >= {"a.jsonl", "b.jsonl.gz", "c.parquet"}
    assert sum(f["rows"] for f in m["source_files"]) == 10_000
