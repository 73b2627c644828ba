"""Assistant-only label masks from char spans (hand-worked), and multi-turn chat tokenization."""

from __future__ import annotations

from app.core.masking import IGNORE_INDEX, apply_label_mask, token_mask_from_char_spans


def test_mask_from_char_spans_hand_worked():
    # text "ab|cd|ef" tokens at chars [0,2) [2,4) [4,6) [6,8); span [2, 6) covers tokens 1 and 2
    offsets = [(0, 2), (2, 4), (4, 6), (6, 8)]
    assert token_mask_from_char_spans(offsets, [(2, 6)]) == [False, True, True, False]
    assert token_mask_from_char_spans(offsets, [(0, 1), (6, 8)]) == [True, False, False, True]
    assert token_mask_from_char_spans(offsets, []) == [False] * 4


def test_apply_label_mask():
    assert apply_label_mask([5, 6, 7], [False, True, True]) == [IGNORE_INDEX, 6, 7]


def test_multi_turn_chat_trains_every_assistant_turn_only(tiny_model_dir):
    from transformers import AutoTokenizer

    from app.data.tokenization import ChatTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    chat = ChatTokenizer(tok, max_length=512)
    msgs = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "how many apples"},
        {"role": "assistant", "content": "two apples"},
        {"role": "user", "content": "and now"},
        {"role": "assistant", "content": "three"},
    ]
    out = chat.sft({"messages": msgs})
    trained = [i for i, l in zip(out["input_ids"], out["labels"]) if l != IGNORE_INDEX]
    assert tok.decode(trained) == "two apples<|im_end|>three<|im_end|>"
    assert len(out["input_ids"]) == len(out["labels"])
    # the unmasked tokens are exactly where labels == input_ids
    assert all(l in (IGNORE_INDEX, i) for i, l in zip(out["input_ids"], out["labels"]))
