"""``split_by: prompt``: the SFT, preference and prompt artifacts of one HH-RLHF source hold out the same
conversations (the RLHF chain's SFT, reward model and PPO prompts never train on a held-out prompt). No Ray: the
ingest's row processor and split selection are called on one batch directly."""

from __future__ import annotations

import json

import numpy as np

from app.data.pipeline import RowProcessor, _select

ROWS = [{"chosen": f"\n\nHuman: question {i}?\n\nAssistant: sure\n\nHuman: and {i % 7}?\n\nAssistant: answer {i}",
         "rejected": f"\n\nHuman: question {i}?\n\nAssistant: sure\n\nHuman: and {i % 7}?\n\nAssistant: no"}
        for i in range(40)]


def held_out(record_type: str, split_by: str, model_dir) -> set[int]:
    proc = RowProcessor(record_type, {"hh.jsonl": "hh_rlhf"}, str(model_dir), 128, "truncate", split_by=split_by)
    n = len(ROWS)
    out = proc({"uid": np.arange(n), "source": np.array(["hh.jsonl"] * n), "line": np.arange(1, n + 1),
                "payload": np.array([json.dumps(r).encode() for r in ROWS], dtype=object)})
    batch = {k: np.asarray(v) for k, v in out.items()}
    assert batch["ok"].all(), batch["reason"]
    picked = _select(batch, np.empty(0, np.int64), ["uid"], split="validation", fraction=0.3, seed=0)
    return set(picked["uid"].tolist())


def test_split_by_prompt_holds_out_the_same_transcripts_in_every_artifact(tiny_model_dir):
    by_prompt = {kind: held_out(kind, "prompt", tiny_model_dir) for kind in ("sft", "preference", "prompt")}
    assert 0 < len(by_prompt["sft"]) < len(ROWS)
    assert by_prompt["sft"] == by_prompt["preference"] == by_prompt["prompt"]
    by_record = {kind: held_out(kind, "record", tiny_model_dir) for kind in ("sft", "preference")}
    assert by_record["sft"] != by_record["preference"]  # the default hashes whole records: the sides disagree
