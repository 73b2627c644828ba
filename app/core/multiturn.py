"""Multi-turn episodes as one response token block: which tokens the model generated (loss) and which the environment
inserted (tool results, chat-template glue: context only, never loss).

An episode after the prompt is a list of segments ``(role, token_ids, logprobs)`` in order: ``role='model'`` for tokens
the policy sampled (``logprobs``: the rollout engine's per-token log-probs, or None), anything else (``'tool'``,
``'env'``) for tokens the environment wrote. The trainer sees the concatenation as the response ``[T]``; the loss mask
is 1 exactly on model tokens (the multi-turn masking of e.g. ToolRL / verl's multi-turn rollouts). Pure python.
"""

from __future__ import annotations

from typing import Sequence

MODEL = "model"


def assemble_episode(
    segments: Sequence[tuple[str, Sequence[int], Sequence[float] | None]],
) -> tuple[list[int], list[float], list[float]]:
    """Concatenate segments into ``(token_ids [T], loss_mask [T], rollout_logp [T])``.

    loss_mask is 1.0 on tokens of ``'model'`` segments and 0.0 on every other role; rollout_logp carries the model
    segments' log-probs (0.0 where none were given and on environment tokens). A model segment's log-probs must have
    one entry per token.
    """
    ids: list[int] = []
    mask: list[float] = []
    logp: list[float] = []
    for i, (role, tokens, lps) in enumerate(segments):
        tokens = [int(t) for t in tokens]
        ids.extend(tokens)
        is_model = role == MODEL
        mask.extend([1.0 if is_model else 0.0] * len(tokens))
        if is_model and lps is not None:
            if len(lps) != len(tokens):
                raise ValueError(f"segment {i}: {len(tokens)} tokens but {len(lps)} log-probs")
            logp.extend(float(x) for x in lps)
        else:
            logp.extend([0.0] * len(tokens))
    return ids, mask, logp


def model_token_count(segments: Sequence[tuple[str, Sequence[int], Sequence[float] | None]]) -> int:
    """Tokens the policy generated in an episode (what a token budget such as max_new_tokens counts)."""
    return sum(len(tokens) for role, tokens, _ in segments if role == MODEL)
