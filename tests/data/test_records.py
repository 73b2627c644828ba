"""Per-row validation and conversion: every malformed kind is a RowError naming the field; good rows convert."""

from __future__ import annotations

import json

import pytest

from app.data.errors import RowError
from app.data.records import canonical_text, decode_json_line, normalize, parse_hh_transcript

GSM = {"question": "Tom has 3 apples. How many?", "answer": "3 apples.\n#### 3"}


def test_gsm8k_to_sft_and_prompt():
    assert normalize(GSM, "sft")["messages"][1] == {"role": "assistant", "content": GSM["answer"]}
    assert normalize(GSM, "prompt") == {"prompt_messages": [{"role": "user", "content": GSM["question"]}], "reference": "3"}
    assert normalize({"question": "q", "answer": "x\n#### 1,234"}, "prompt")["reference"] == "1234"


def test_hh_transcript_to_preference():
    row = {"chosen": "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: joke?\n\nAssistant: knock knock",
           "rejected": "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: joke?\n\nAssistant: no"}
    rec = normalize(row, "preference")
    assert [m["role"] for m in rec["prompt_messages"]] == ["user", "assistant", "user"]
    assert rec["chosen"] == "knock knock" and rec["rejected"] == "no"


@pytest.mark.parametrize(
    "raw, record_type, field",
    [
        (b"\xff\xfe not utf8", "sft", "<line>"),
        (b'{"question": "q", ', "sft", "<line>"),
        (b"[1, 2]", "sft", "<line>"),
        (b'{"question": "", "answer": "a"}', "sft", "question"),
        (b'{"question": 5, "answer": "a"}', "sft", "question"),
        (b'{"question": "q"}', "sft", "<row>"),
        (b'{"question": "q", "answer": "no final"}', "prompt", "answer"),
        (b'{"messages": []}', "sft", "messages"),
        (b'{"messages": "hi"}', "sft", "messages"),
        (b'{"messages": [{"role": "user", "content": "a"}, {"role": "system", "content": "b"}, {"role": "assistant", "content": "c"}]}', "sft", "messages[1].role"),
        (b'{"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]}', "sft", "messages[1].role"),
        (b'{"messages": [{"role": "user", "content": "a"}]}', "sft", "messages"),
        (b'{"messages": [{"role": "robot", "content": "a"}]}', "sft", "messages[0].role"),
        (b'{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "  "}]}', "sft", "content"),
        (b'{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}', "prompt", "messages"),
        (b'{"prompt": "p", "chosen": "x", "rejected": "x"}', "preference", "rejected"),
        (b'{"prompt": "p", "chosen": "x"}', "preference", "<row>"),
        (b'{"chosen": "no transcript", "rejected": "x"}', "preference", "chosen"),
        (b'{"chosen": "\\n\\nHuman: a\\n\\nAssistant: b", "rejected": "\\n\\nHuman: z\\n\\nAssistant: c"}', "preference", "rejected"),
        (b'{"instruction": "do", "response": "\\ud800"}', "sft", "response"),
        (b'{"question": "q", "answer": "a"}', "preference", "<row>"),
    ],
)
def test_malformed_rows_name_the_field(raw, record_type, field):
    with pytest.raises(RowError) as info:
        normalize(decode_json_line(raw), record_type)
    assert info.value.field == field and info.value.reason


def test_canonical_text_ignores_whitespace_and_key_order():
    a = normalize({"question": "Tom  has 3", "answer": "#### 3"}, "sft")
    b = normalize({"answer": "#### 3", "question": "Tom has 3 "}, "sft")
    assert canonical_text(a) == canonical_text(b)
    assert json.loads(canonical_text(a))


def test_hh_rejects_garbage():
    with pytest.raises(RowError):
        parse_hh_transcript("Human: missing leading newlines", "chosen")
