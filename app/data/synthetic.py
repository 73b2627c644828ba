"""Synthetic datasets for drills, benchmarks and tests: learnable preference pairs and a packed SFT artifact.

They stand in for real ingests where only the shapes matter (step time, resume exactness) or where a tiny model must
learn something in a few steps. ``write_packed_artifact`` writes the same folder layout and columns as the ingest
pipeline's SFT artifact (input_ids, labels with -100 on prompt tokens, position_ids restarting per packed example,
seq_len), without tokenizing anything.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

GOOD = "thank you here to help step by step".split()
BAD = "sorry i cannot no".split()
TOPICS = "apples water people words time day week dollars number question".split()


def tokenize_pair(tok, prompt: str, chosen: str, rejected: str) -> dict:
    """One 'preference' record: ChatML prompt (labels -100) + response + end-of-turn (labels = ids)."""
    prompt_text = tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True)
    prompt_ids = tok(prompt_text, add_special_tokens=False)["input_ids"]
    row = {"prompt": prompt, "chosen": chosen, "rejected": rejected}
    for side, text in (("chosen", chosen), ("rejected", rejected)):
        resp = tok(text + "<|im_end|>\n", add_special_tokens=False)["input_ids"]
        row[f"{side}_input_ids"] = prompt_ids + resp
        row[f"{side}_labels"] = [-100] * len(prompt_ids) + resp
    return row


def synthetic_pairs(tok, n: int, seed: int) -> list[dict]:
    """Pairs where the chosen answer is helpful-sounding and the rejected one a refusal: easy to learn, varied lengths."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        topic = " ".join(rng.choices(TOPICS, k=rng.randint(2, 6)))
        chosen = " ".join(rng.choices(GOOD, k=rng.randint(3, 8)) + rng.choices(TOPICS, k=2))
        rejected = " ".join(rng.choices(BAD, k=rng.randint(3, 8)) + rng.choices(TOPICS, k=2))
        rows.append(tokenize_pair(tok, f"how many {topic}?", chosen, rejected))
    return rows



def write_preference_artifact(out: Path, tok, n_train: int, n_val: int, seed: int = 0, model_source: str = "tiny:llama") -> Path:
    """A 'preference' dataset artifact of :func:`synthetic_pairs` (train, and a validation split when ``n_val``)."""
    from app.data.artifact import write_artifact

    splits = {"train": synthetic_pairs(tok, n_train, seed)}
    if n_val:
        splits["validation"] = synthetic_pairs(tok, n_val, seed + 1)
    write_artifact(out, "preference", splits, {"model_source": model_source, "max_length": 128})
    return out


def write_packed_artifact(out: Path, n_rows: int = 48, max_length: int = 64, vocab: int = 500, seed: int = 0,
                          row_group_size: int | None = None) -> Path:
    """A packed 'sft' artifact of random examples (4–11 prompt + 4–15 response tokens each, packed to ``max_length``);
    ``row_group_size``: Parquet rows per row group (None: pyarrow's default, one group for small splits)."""
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
    pq.write_table(table, out / "train" / "part-00000.parquet", row_group_size=row_group_size)
    manifest = {"id": f"double-{seed}", "version": 1, "record_type": "sft", "max_length": max_length,
                "splits": {"train": n_rows}, "tokens": int(sum(rows["seq_len"]))}
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out
