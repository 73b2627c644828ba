"""Per-row validation and conversion: every malformed kind is a RowError naming the field; good rows convert."""

from __future__ import annotations

import json

import pytest

from app.config.paths import REPO_ROOT
from app.data.errors import RowError
from app.data.records import canonical_text, decode_json_line, normalize, parse_hh_transcript, prompt_of

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


def test_one_hh_transcript_has_one_prompt_in_every_record_type():
    """split_by: prompt hashes prompt_of(record): the SFT, preference and prompt records of one HH transcript must give
    the same prompt (one side of the split in all three artifacts), and two transcripts that differ only in the
    replies must too; a different conversation must not."""
    row = {"chosen": "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: joke?\n\nAssistant: knock knock",
           "rejected": "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: joke?\n\nAssistant: no"}
    keys = {canonical_text(prompt_of(normalize(row, kind))) for kind in ("sft", "preference", "prompt")}
    assert len(keys) == 1
    assert [m["role"] for m in prompt_of(normalize(row, "sft"))["prompt_messages"]] == ["user", "assistant", "user"]
    other_reply = {k: v.replace("knock knock", "a pun").replace("Assistant: no", "Assistant: never") for k, v in row.items()}
    assert canonical_text(prompt_of(normalize(other_reply, "preference"))) in keys
    other_prompt = {k: v.replace("joke?", "a riddle?") for k, v in row.items()}
    assert canonical_text(prompt_of(normalize(other_prompt, "sft"))) not in keys


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
        (b'{"prompt": "p", "chosen": "x"}', "preference", "rejected"),
        (b'{"chosen": "\\n\\nHuman: a\\n\\nAssistant: b"}', "preference", "rejected"),
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


SAMPLES = REPO_ROOT / "tests" / "data" / "samples"
SKY = [{"role": "system", "content": "Answer in one word."}, {"role": "user", "content": "What colour is the sky?"}]
FRANCE = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Capital of France?"}]


def _sample_lines(name: str) -> list[bytes]:
    return (SAMPLES / name).read_bytes().splitlines()


# line → the normalized preference record, or the field its RowError names
PREFERENCE_FORMATS = {
    1: {"prompt_messages": [{"role": "user", "content": "The sky is"}], "chosen": " blue.", "rejected": " green."},  # TRL standard
    2: {"prompt_messages": SKY, "chosen": "Blue.", "rejected": "Green."},  # TRL conversational, explicit prompt
    3: {"prompt_messages": [{"role": "user", "content": "What colour is grass?"}], "chosen": "Green.", "rejected": "Purple."},  # TRL implicit prompt
    4: {"prompt_messages": FRANCE, "chosen": "Paris.", "rejected": "Lyon."},  # OpenAI DPO JSONL
    5: "non_preferred_output",  # OpenAI row missing a side
    6: "preferred_output",  # two messages as one response
    7: "rejected",  # implicit prompts differ
    8: "chosen[0].role",  # a user message as the response
    9: "input.messages",  # OpenAI input ends with the assistant
    10: "input.tools",  # tool definitions
    11: "rejected",  # TRL row missing a side
    12: "non_preferred_output",  # identical responses
}


@pytest.mark.parametrize("line", sorted(PREFERENCE_FORMATS))
def test_preference_formats_users_bring(line):
    raw, want = _sample_lines("preference_formats.jsonl")[line - 1], PREFERENCE_FORMATS[line]
    if isinstance(want, dict):
        assert normalize(decode_json_line(raw), "preference") == want
        return
    with pytest.raises(RowError) as info:
        normalize(decode_json_line(raw), "preference")
    assert info.value.field == want and info.value.reason


def test_openai_and_trl_rows_also_make_prompt_records():
    rows = [decode_json_line(r) for r in _sample_lines("preference_formats.jsonl")[:4]]
    assert normalize(rows[3], "prompt") == {"prompt_messages": FRANCE, "reference": ""}
    assert normalize(rows[2], "prompt")["prompt_messages"] == [{"role": "user", "content": "What colour is grass?"}]
    # an explicit format forces the layout: an OpenAI row read as TRL 'preference' has no prompt
    with pytest.raises(RowError) as info:
        normalize(rows[3], "preference", "preference")
    assert info.value.field == "chosen"


KTO_ROWS = {
    1: {"prompt_messages": [{"role": "user", "content": "The sky is"}], "completion": " blue.", "label": True},
    2: {"prompt_messages": [{"role": "user", "content": "The sky is"}], "completion": " green.", "label": False},
    3: {"prompt_messages": [{"role": "user", "content": "Capital of France?"}], "completion": "Paris.", "label": True},
    4: {"prompt_messages": [{"role": "system", "content": "Be rude."}, {"role": "user", "content": "Capital of France?"}],
        "completion": "Look it up.", "label": False},
    5: "label",  # "yes" is not a boolean
    6: "completion",  # missing
    7: "label",  # missing: prompt/completion rows ingested as 'unpaired' are KTO rows
    8: "completion",  # blank
    9: "prompt[0].role",  # turns alternate from the user
}


@pytest.mark.parametrize("line", sorted(KTO_ROWS))
def test_kto_unpaired_rows(line):
    raw, want = _sample_lines("kto_mixed.jsonl")[line - 1], KTO_ROWS[line]
    if isinstance(want, dict):
        assert normalize(decode_json_line(raw), "unpaired") == want
        return
    with pytest.raises(RowError) as info:
        normalize(decode_json_line(raw), "unpaired")
    assert info.value.field == want and info.value.reason


def test_unpaired_needs_kto_rows_and_kto_rows_are_not_pairs():
    with pytest.raises(RowError, match="needs KTO rows"):
        normalize({"prompt": "p", "chosen": "a", "rejected": "b"}, "unpaired")
    with pytest.raises(RowError, match="record_type 'unpaired'"):
        normalize({"prompt": "p", "completion": "a", "label": True}, "preference")
    assert normalize({"prompt": "p", "completion": "a", "label": True}, "prompt")["reference"] == ""
    # desirable and undesirable copies of the same text are different records (not exact duplicates)
    good = normalize({"prompt": "p", "completion": "a", "label": True}, "unpaired")
    bad = normalize({"prompt": "p", "completion": "a", "label": False}, "unpaired")
    assert canonical_text(good) != canonical_text(bad)
