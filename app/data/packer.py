"""Per-block output rows of the ingest pipeline (``map_batches`` functions): tokenized records → artifact rows.

SFT rows are packed per block (``pack_sequences``: exact fill + BFD + local search, app/core/packing.py) over the
examples of one batch of a few thousand, in input order, so no stage holds more than a block; the cost against
packing the whole split at once is measured in benchmarks/packing.py (``per_block``). Every output batch also
carries ``_trained`` (label tokens per row) and ``_digest`` (16 bytes of SHA-256 per row) for the manifest's totals
and the order-free content id; both are dropped before writing.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np

from app.core.packing import concat_packed, pack_sequences


def _digest(row: dict[str, Any], names: list[str]) -> bytes:
    h = hashlib.sha256()
    for name in names:
        v = row[name]
        h.update(np.asarray(v, dtype=np.int32).tobytes() if isinstance(v, list) and (not v or isinstance(v[0], int))
                 else str(v).encode("utf-8"))
        h.update(b"\x1f")
    return h.digest()[:16]


def artifact_rows(batch: dict[str, np.ndarray], record_type: str, columns: list[str], max_length: int,
                  pack: bool) -> dict[str, list]:
    """A batch of kept rows {uid, tokens (JSON)} → artifact rows of ``columns`` (+ ``_trained``, ``_digest``)."""
    order = np.argsort(np.asarray(batch["uid"], dtype=np.int64), kind="stable")
    rows = [json.loads(batch["tokens"][i]) for i in order]
    if record_type == "sft":
        if pack and rows:
            bins = pack_sequences([len(r["input_ids"]) for r in rows], max_length)
            out = []
            for members in sorted(bins, key=min):  # stable order: by earliest example in the window
                members = sorted(members)
                ids, labels, pos = concat_packed([rows[i]["input_ids"] for i in members],
                                                 [rows[i]["labels"] for i in members])
                out.append({"input_ids": ids, "labels": labels, "position_ids": pos, "seq_len": len(ids)})
        else:
            out = [dict(r, position_ids=list(range(len(r["input_ids"]))), seq_len=len(r["input_ids"])) for r in rows]
    else:
        out = rows
    cols: dict[str, list] = {c: [r[c] for r in out] for c in columns}
    cols["_trained"] = [sum(1 for x in r.get("labels", []) if x != -100) for r in out]
    cols["_digest"] = [_digest(r, columns) for r in out]
    return cols


def batch_totals(batch: dict[str, np.ndarray], max_length: int) -> dict[str, list]:
    """One row per batch of artifact rows: rows, trained tokens, the sum of the row digests mod 2^128 (order-free),
    and the histogram of ``seq_len`` (sft) for the length plot."""
    digest_sum = sum(int.from_bytes(bytes(d), "big") for d in batch["_digest"]) % (1 << 128)
    hist = np.bincount(np.asarray(batch["seq_len"], dtype=np.int64), minlength=max_length + 1)[: max_length + 1] \
        if "seq_len" in batch else np.zeros(max_length + 1, np.int64)
    return {"rows": [len(batch["_digest"])], "trained": [int(np.sum(batch["_trained"]))],
            "digest": [f"{digest_sum:032x}"], "hist": [hist.tolist()]}
