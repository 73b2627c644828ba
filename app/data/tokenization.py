"""Chat-template tokenization with assistant-only labels, per record type, and the max_length policy.

The model's own chat template renders the conversation; assistant turns (content + end-of-turn token) are located
by rendering growing prefixes of the conversation, and mapped to tokens with the fast tokenizer's offsets
(app.core.masking). Every assistant turn of a multi-turn chat is trained; system and user tokens never are.
"""

from __future__ import annotations

import json
from typing import Any

from app.core.masking import IGNORE_INDEX, apply_label_mask, token_mask_from_char_spans
from app.data.errors import RowError


class TooLong(RowError):
    """The example does not fit ``max_length`` (under ``drop_turns``: retried with fewer turns first)."""


def drop_oldest_turn(messages: list[dict[str, str]]) -> list[dict[str, str]] | None:
    """``messages`` without its oldest turn (the first user message and the replies before the next user message),
    keeping leading system messages; None when only one user turn is left (nothing can be dropped)."""
    head = 0
    while head < len(messages) and messages[head]["role"] == "system":
        head += 1
    nxt = next((k for k in range(head + 1, len(messages)) if messages[k]["role"] == "user"), None)
    return None if nxt is None else messages[:head] + messages[nxt:]


class ChatTokenizer:
    """Wraps a Hugging Face fast tokenizer with a chat template; one per worker (loading costs ~0.1–1 s)."""

    def __init__(self, tokenizer, max_length: int, length_policy: str = "truncate"):
        if not getattr(tokenizer, "is_fast", False):
            raise ValueError("a fast tokenizer (offset mapping) is required")
        if tokenizer.chat_template is None:
            raise ValueError("the tokenizer has no chat template")
        self.tok = tokenizer
        self.max_length = max_length
        self.policy = length_policy

    def render(self, messages: list[dict[str, str]], add_generation_prompt: bool = False) -> str:
        return self.tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)

    def assistant_spans(self, messages: list[dict[str, str]], text: str, only_last: bool = False) -> list[tuple[int, int]]:
        """Char spans [start, end) in ``text`` of each assistant turn's content + end-of-turn token."""
        spans = []
        for k, msg in enumerate(messages):
            if msg["role"] != "assistant" or (only_last and k != len(messages) - 1):
                continue
            head = self.render(messages[:k], add_generation_prompt=True)
            upto = self.render(messages[: k + 1])
            if not (upto.startswith(head) and text.startswith(upto)):
                raise RowError("messages", "chat template is not prefix-stable; cannot locate assistant turns")
            end = len(upto.rstrip())  # keep the end-of-turn token, drop the newline after it
            spans.append((len(head), end))
        return spans

    def encode(self, text: str, spans: list[tuple[int, int]]) -> tuple[list[int], list[int]]:
        enc = self.tok(text, add_special_tokens=False, return_offsets_mapping=True)
        ids = list(enc["input_ids"])
        return ids, apply_label_mask(ids, token_mask_from_char_spans(enc["offset_mapping"], spans))

    def _fit(self, ids: list[int], labels: list[int], field: str) -> tuple[list[int], list[int]]:
        if len(ids) > self.max_length:
            if self.policy != "truncate":
                raise TooLong(field, f"{len(ids)} tokens > max_length {self.max_length}")
            ids, labels = ids[: self.max_length], labels[: self.max_length]
        if all(x == IGNORE_INDEX for x in labels):
            raise RowError(field, f"no trainable tokens within max_length {self.max_length}")
        return ids, labels

    def _dropping_turns(self, encode, messages: list[dict[str, str]]) -> dict[str, Any]:
        """``encode(messages)``; under policy ``drop_turns``, retried without the oldest turn while it is too long.

        A turn is a user message and the replies up to the next user message; system messages and the last user
        message always stay, so the part that is trained or compared (the final response) is never cut.
        """
        while True:
            try:
                return encode(messages)
            except TooLong as err:
                if self.policy != "drop_turns":
                    raise
                shorter = drop_oldest_turn(messages)
                if shorter is None:
                    raise TooLong(err.field, f"{err.reason}, even with only the last user turn") from None
                messages = shorter

    def sft(self, record: dict[str, Any]) -> dict[str, Any]:
        """{"messages"} → {"input_ids", "labels"} (length ≤ max_length; labels -100 outside assistant turns)."""
        return self._dropping_turns(self._sft, record["messages"])

    def _sft(self, msgs: list[dict[str, str]]) -> dict[str, Any]:
        text = self.render(msgs)
        ids, labels = self.encode(text, self.assistant_spans(msgs, text))
        ids, labels = self._fit(ids, labels, "messages")
        return {"input_ids": ids, "labels": labels}

    def preference(self, record: dict[str, Any]) -> dict[str, Any]:
        """{"prompt_messages", "chosen", "rejected"} → rendered prompt + token ids/labels of both completions.

        Labels are -100 on the prompt (every earlier turn) and set on the final assistant response + end token.
        Under ``drop_turns`` both sides lose the same oldest turns, so they still share one prompt.
        """
        return self._dropping_turns(lambda msgs: self._preference(msgs, record), record["prompt_messages"])

    def _preference(self, prompt_messages: list[dict[str, str]], record: dict[str, Any]) -> dict[str, Any]:
        prompt = self.render(prompt_messages, add_generation_prompt=True)
        out: dict[str, Any] = {"prompt": prompt, "chosen": record["chosen"], "rejected": record["rejected"]}
        for side in ("chosen", "rejected"):
            msgs = prompt_messages + [{"role": "assistant", "content": record[side]}]
            text = self.render(msgs)
            ids, labels = self.encode(text, self.assistant_spans(msgs, text, only_last=True))
            ids, labels = self._fit(ids, labels, side)
            out[f"{side}_input_ids"], out[f"{side}_labels"] = ids, labels
        return out

    def unpaired(self, record: dict[str, Any]) -> dict[str, Any]:
        """{"prompt_messages", "completion", "label"} (KTO) → rendered prompt, the completion's ids/labels, label.

        Labels as for one side of a preference pair (-100 on the prompt), so a trainer can recombine prompt i with
        completion j (KTO's mismatched pairs) by splitting each row at its first label.
        """
        return self._dropping_turns(lambda msgs: self._unpaired(msgs, record), record["prompt_messages"])

    def _unpaired(self, prompt_messages: list[dict[str, str]], record: dict[str, Any]) -> dict[str, Any]:
        msgs = prompt_messages + [{"role": "assistant", "content": record["completion"]}]
        text = self.render(msgs)
        ids, labels = self._fit(*self.encode(text, self.assistant_spans(msgs, text, only_last=True)), "completion")
        prompt = self.render(prompt_messages, add_generation_prompt=True)
        return {"prompt": prompt, "completion": record["completion"], "label": bool(record["label"]),
                "input_ids": ids, "labels": labels}

    def prompt(self, record: dict[str, Any]) -> dict[str, Any]:
        """{"prompt_messages", "reference"} → rendered prompt (ends with the assistant header) and its token ids."""
        return self._dropping_turns(lambda msgs: self._prompt(msgs, record), record["prompt_messages"])

    def _prompt(self, prompt_messages: list[dict[str, str]], record: dict[str, Any]) -> dict[str, Any]:
        text = self.render(prompt_messages, add_generation_prompt=True)
        ids = list(self.tok(text, add_special_tokens=False)["input_ids"])
        if len(ids) >= self.max_length:
            raise TooLong("prompt", f"{len(ids)} prompt tokens leave no room to generate within max_length {self.max_length}")
        return {
            "prompt": text,
            "messages": json.dumps(prompt_messages, ensure_ascii=False),
            "prompt_input_ids": ids,
            "reference": record.get("reference", ""),
        }

    def tokenize(self, record_type: str, record: dict[str, Any]) -> dict[str, Any]:
        return getattr(self, record_type)(record)
