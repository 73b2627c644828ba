"""Label masks for causal-LM training: -100 everywhere except the tokens the model should learn to produce.

Chat templates render text; the trainable parts are the assistant turns (content plus end-of-turn token). We find
their character spans in the rendered text and map them to tokens through the tokenizer's offset mapping.
"""

from __future__ import annotations

from typing import Sequence

IGNORE_INDEX = -100


def token_mask_from_char_spans(offsets: Sequence[tuple[int, int]], spans: Sequence[tuple[int, int]]) -> list[bool]:
    """True for each token whose first character lies inside one of the half-open char ``spans`` [start, end).

    ``offsets``: per-token (char_start, char_end) as returned by a fast tokenizer (length T). Returns T booleans.
    Spans must be sorted and non-overlapping. Zero-width tokens (start == end) take the span of their start.
    """
    mask = [False] * len(offsets)
    j = 0
    for t, (start, _end) in enumerate(offsets):
        while j < len(spans) and spans[j][1] <= start:
            j += 1
        if j < len(spans) and spans[j][0] <= start < spans[j][1]:
            mask[t] = True
    return mask


def apply_label_mask(input_ids: Sequence[int], mask: Sequence[bool]) -> list[int]:
    """labels[t] = input_ids[t] where mask[t] else -100 (same length T)."""
    if len(input_ids) != len(mask):
        raise ValueError(f"input_ids ({len(input_ids)}) and mask ({len(mask)}) differ in length")
    return [int(x) if m else IGNORE_INDEX for x, m in zip(input_ids, mask)]
