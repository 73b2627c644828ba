"""Contamination on real GSM8K: planted test items (verbatim and lightly edited) are all flagged; clean train < 1%."""

from __future__ import annotations

import json
import random

import pytest

from app.data.contamination import build_index, scan_texts


@pytest.mark.slow
def test_planted_gsm8k_test_items_flagged_and_clean_train_mostly_clean(shared):
    test_file = shared / "data" / "gsm8k" / "test.jsonl"
    train = [json.loads(l) for l in open(shared / "data" / "gsm8k" / "train.jsonl", encoding="utf-8")]
    test = [json.loads(l) for l in open(test_file, encoding="utf-8")]
    index, n_items = build_index([str(test_file)], ["question", "answer"], 13)
    assert n_items == len(test)

    rng = random.Random(0)
    planted = []
    for i, row in enumerate(rng.sample(test, 50)):
        text = row["question"] + "\n" + row["answer"]
        if i % 2:  # lightly edited: change case, punctuation and one word near the end
            words = text.split()
            words[-3] = "edited"
            text = " ".join(words).upper().replace(",", " ,")
        planted.append(text)
    hits = scan_texts(planted, index, 13, 1)
    assert all(hits), [p[:60] for p, h in zip(planted, hits) if not h]

    clean_hits = scan_texts([r["question"] + "\n" + r["answer"] for r in train], index, 13, 1)
    flagged = [(i + 1, h) for i, h in enumerate(clean_hits) if h]
    print(f"\nclean GSM8K train flagged: {len(flagged)}/{len(train)} = {len(flagged) / len(train):.3%}")
    for line, h in flagged[:20]:
        print(f"  train line {line}: {h}")
    assert len(flagged) / len(train) < 0.01
