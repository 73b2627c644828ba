"""Train-area fixtures: a tiny packed SFT artifact written straight to the data contract's Parquet columns.

``packed_artifact_double`` is a named test double for the `data` area's artifact writer (same folder layout and
columns: input_ids, labels with -100 on prompt tokens, position_ids restarting per packed example, seq_len).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest


def write_packed_artifact_double(out: Path, n_rows: int = 48, max_length: int = 64, vocab: int = 500, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    rows = {"input_ids": [], "labels": [], "position_ids": [], "seq_len": []}
    for _ in range(n_rows):
        ids, labels, pos = [], [], []
        while True:
            p, r = int(rng.integers(4, 12)), int(rng.integers(4, 16))
            if len(ids) + p + r > max_length:
                break
            ex = rng.integers(3, vocab, size=p + r).tolist()
            ids += ex
            labels += [-100] * p + ex[p:]
            pos += list(range(p + r))
        rows["input_ids"].append(ids)
        rows["labels"].append(labels)
        rows["position_ids"].append(pos)
        rows["seq_len"].append(len(ids))
    (out / "train").mkdir(parents=True, exist_ok=True)
    table = pa.table({
        "input_ids": pa.array(rows["input_ids"], type=pa.list_(pa.int32())),
        "labels": pa.array(rows["labels"], type=pa.list_(pa.int32())),
        "position_ids": pa.array(rows["position_ids"], type=pa.list_(pa.int32())),
        "seq_len": pa.array(rows["seq_len"], type=pa.int32()),
    })
    pq.write_table(table, out / "train" / "part-00000.parquet")
    manifest = {"id": f"double-{seed}", "version": 1, "record_type": "sft", "max_length": max_length,
                "splits": {"train": n_rows}, "tokens": int(sum(rows["seq_len"]))}
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


@pytest.fixture(scope="session")
def packed_artifact_double(tmp_path_factory) -> Path:
    return write_packed_artifact_double(tmp_path_factory.mktemp("sft_artifact"))
