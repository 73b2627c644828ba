"""Token-level language-model losses (pure torch, no I/O).

Causal LM next-token cross-entropy for packed, padding-free batches: logits at position t predict the token at
t+1; positions whose label is ``ignore_index`` (prompt tokens, padding) and positions where a new packed example
starts (``position_ids == 0`` at t+1: the previous example must not predict the next one's first token) carry no loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


def shift_packed_labels(labels: torch.Tensor, position_ids: torch.Tensor | None = None, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Next-token targets for each position: ``targets[:, t] = labels[:, t+1]``, last position ignored.

    labels, position_ids: [B, T] -> targets [B, T]. Where ``position_ids[:, t+1] == 0`` (a packed example
    boundary) the target is ``ignore_index``.
    """
    targets = torch.full_like(labels, ignore_index)
    targets[:, :-1] = labels[:, 1:]
    if position_ids is not None:
        boundary = torch.zeros_like(labels, dtype=torch.bool)
        boundary[:, :-1] = position_ids[:, 1:] == 0
        targets = targets.masked_fill(boundary, ignore_index)
    return targets


def token_cross_entropy(
    logits: torch.Tensor, targets: torch.Tensor, ignore_index: int = IGNORE_INDEX
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed cross-entropy over non-ignored tokens and their count.

    logits [B, T, V] (any float dtype; computed in float32), targets [B, T] already aligned (see
    ``shift_packed_labels``). Returns (loss_sum: scalar, n_tokens: scalar int64). Mean loss = loss_sum / n_tokens;
    returning both lets callers normalise over a whole global batch (all micro-batches, all ranks).
    """
    flat_logits = logits.reshape(-1, logits.shape[-1]).float()
    flat_targets = targets.reshape(-1)
    loss_sum = F.cross_entropy(flat_logits, flat_targets, ignore_index=ignore_index, reduction="sum")
    n_tokens = (flat_targets != ignore_index).sum()
    return loss_sum, n_tokens


def causal_lm_loss(
    logits: torch.Tensor, labels: torch.Tensor, position_ids: torch.Tensor | None = None, ignore_index: int = IGNORE_INDEX
) -> tuple[torch.Tensor, torch.Tensor]:
    """Packed causal-LM loss: ``token_cross_entropy(logits, shift_packed_labels(labels, position_ids))``.

    logits [B, T, V], labels [B, T] aligned with input_ids (HF convention), position_ids [B, T] or None.
    Returns (loss_sum, n_tokens).
    """
    return token_cross_entropy(logits, shift_packed_labels(labels, position_ids, ignore_index), ignore_index)
