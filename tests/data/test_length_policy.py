"""length_policy 'drop_turns': oldest whole turns go first; the last user turn and the response are never cut."""

import pytest

from app.core.masking import IGNORE_INDEX
from app.data.errors import RowError
from app.data.tokenization import ChatTokenizer, drop_oldest_turn

SYS = {"role": "system", "content": "be brief"}
U1, A1 = {"role": "user", "content": "first question about apples"}, {"role": "assistant", "content": "apples are red"}
U2, A2 = {"role": "user", "content": "second question about pears"}, {"role": "assistant", "content": "pears are green"}
U3 = {"role": "user", "content": "and plums"}


def test_drop_oldest_turn_keeps_system_and_the_last_user_turn():
    assert drop_oldest_turn([SYS, U1, A1, U2, A2, U3]) == [SYS, U2, A2, U3]
    assert drop_oldest_turn([SYS, U2, A2, U3]) == [SYS, U3]
    assert drop_oldest_turn([U1, A1, U3]) == [U3]
    assert drop_oldest_turn([SYS, U3]) is None and drop_oldest_turn([U3]) is None


def _lengths(chat: ChatTokenizer, prompt: list) -> int:
    out = chat.preference({"prompt_messages": prompt, "chosen": "plums are purple", "rejected": "no idea, sorry"})
    return max(len(out["chosen_input_ids"]), len(out["rejected_input_ids"]))


@pytest.fixture
def tok(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def test_preference_drops_just_enough_turns_and_keeps_both_responses_whole(tok):
    full, one_dropped, last_only = [U1, A1, U2, A2, U3], [U2, A2, U3], [U3]
    sizes = [_lengths(ChatTokenizer(tok, 4096), p) for p in (full, one_dropped, last_only)]
    assert sizes[0] > sizes[1] > sizes[2]
    chat = ChatTokenizer(tok, max_length=sizes[1], length_policy="drop_turns")  # fits once the oldest turn is gone
    rec = {"prompt_messages": full, "chosen": "plums are purple", "rejected": "no idea, sorry"}
    out = chat.preference(rec)
    assert out == ChatTokenizer(tok, 4096).preference({**rec, "prompt_messages": one_dropped})
    assert "apples" not in out["prompt"] and "pears" in out["prompt"]
    for side in ("chosen", "rejected"):
        trained = [i for i, lab in zip(out[f"{side}_input_ids"], out[f"{side}_labels"]) if lab != IGNORE_INDEX]
        assert tok.decode(trained) == rec[side] + "<|im_end|>"
    # one token shorter than the last turn alone: quarantined with the reason, never cut
    with pytest.raises(RowError, match="even with only the last user turn"):
        ChatTokenizer(tok, max_length=sizes[2] - 1, length_policy="drop_turns").preference(rec)
    # 'reject' quarantines at the first overflow
    with pytest.raises(RowError, match="> max_length"):
        ChatTokenizer(tok, max_length=sizes[1], length_policy="reject").preference(rec)


def test_prompt_records_drop_turns_too(tok):
    rec = {"prompt_messages": [U1, A1, U2, A2, U3], "reference": ""}
    short = ChatTokenizer(tok, 4096).prompt({**rec, "prompt_messages": [U3]})
    out = ChatTokenizer(tok, len(short["prompt_input_ids"]) + 1, length_policy="drop_turns").prompt(rec)
    assert out["prompt_input_ids"] == short["prompt_input_ids"]
