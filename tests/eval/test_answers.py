"""GSM8K answer extraction, refusal classifier and held-out readers."""

from __future__ import annotations

import gzip
import json

import pytest

from app.config.errors import ConfigError
from app.eval.answers import exact_match, final_number, is_refusal
from app.eval.heldout import read_preference_pairs, read_qa, read_redteam_prompts, transcript_messages


def test_final_number_prefers_hashes_and_normalizes():
    assert final_number("5 + 3 = 8 apples\n#### 1,000") == "1000"
    assert final_number("so 12.50 dollars") == "12.5"
    assert final_number("#### 7 then 9") == "7"
    assert final_number("no digits here") is None
    assert exact_match("The answer is 42.", "6*7=42\n#### 42")
    assert not exact_match("#### 41", "#### 42")


def test_refusal_classifier():
    assert is_refusal("I'm sorry, but I can't help with that request.")
    assert is_refusal("I cannot provide instructions for making weapons.")
    assert not is_refusal("Sure! First, take a tension wrench and insert it.")


def test_readers_name_file_line_and_field(tmp_path):
    bad = tmp_path / "qa.jsonl"
    bad.write_text(json.dumps({"question": "q", "answer": "#### 1"}) + "\n" + json.dumps({"question": "q"}) + "\n")
    with pytest.raises(ConfigError, match=r"qa.jsonl line 2: field 'answer'"):
        read_qa(bad)
    hh = tmp_path / "hh.jsonl.gz"
    with gzip.open(hh, "wt") as fh:
        fh.write(json.dumps({"chosen": "\n\nHuman: hi\n\nAssistant: no", "rejected": "\n\nHuman: hi\n\nAssistant: ok"}) + "\n")
        fh.write(json.dumps({"chosen": "\n\nHuman: x\n\nAssistant: same", "rejected": "\n\nHuman: x\n\nAssistant: same"}) + "\n")
    pairs = read_preference_pairs(hh, offset=0, limit=10)
    assert len(pairs) == 1 and pairs[0]["messages"] == [{"role": "user", "content": "hi"}]
    assert (pairs[0]["chosen"], pairs[0]["rejected"]) == ("no", "ok")
    assert read_redteam_prompts(hh, 5)[1]["prompt"] == "x"
    assert transcript_messages("\n\nHuman: a\n\nAssistant: b\n\nHuman: c")[2] == {"role": "user", "content": "c"}


def test_real_hh_rlhf_red_team_prompts(shared):
    prompts = read_redteam_prompts(shared / "data/hh-rlhf/harmless-base-test.jsonl.gz", 50)
    pairs = read_preference_pairs(shared / "data/hh-rlhf/harmless-base-test.jsonl.gz", 1000, 20)
    assert len(prompts) == 50 and all(p["prompt"] for p in prompts)
    assert len(pairs) == 20 and all(p["line"] > 1000 for p in pairs)


def test_general_text_passages(tmp_path):
    from app.eval.heldout import read_general_text

    docs = read_general_text("stdlib:pydoc_data", 5, 40)
    assert [d["source"] for d in docs] == sorted(d["source"] for d in docs) and len(docs) == 5
    assert all(len(d["text"].split()) == 40 for d in docs) and docs == read_general_text("stdlib:pydoc_data", 5, 40)
    rows = tmp_path / "chat.jsonl"
    rows.write_text(json.dumps({"text": "hello there " * 10}) + "\n" + json.dumps({"txt": "x"}) + "\n")
    with pytest.raises(ConfigError, match=r"chat.jsonl line 2: field 'text' must be a non-empty string"):
        read_general_text(str(rows), 5, 8)
