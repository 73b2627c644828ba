"""Per-sequence log-probabilities of label tokens under a causal LM: the quantity DPO, IPO and PPO compare.

Pure tensor math (no Ray, no I/O). Conventions shared with the "sft"/"preference" record formats:
``labels`` is aligned with ``input_ids`` and holds -100 where no loss is taken (prompt, padding); the model
predicts token t+1 from position t, so logits are shifted by one against labels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


def token_logprobs(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """log p(label_t | <t) for every position; 0 where the label is ignored.

    logits: [B, T, V] (position t predicts token t+1); labels: [B, T] with -100 = ignore.
    Returns [B, T-1] aligned with ``labels[:, 1:]``. Uses cross-entropy (a fused log-softmax + gather) so the
    [B, T, V] log-softmax is never materialised.
    """
    shifted = labels[:, 1:]
    logits = logits[:, :-1]
    nll = F.cross_entropy(
        logits.reshape(-1, logits.size(-1)).float(), shifted.reshape(-1), ignore_index=IGNORE_INDEX, reduction="none"
    )
    return -nll.view(shifted.shape)


def sequence_logprobs(logits: torch.Tensor, labels: torch.Tensor, average: bool = False) -> torch.Tensor:
    """Sum (or mean, ``average=True``) of label-token log-probs per sequence: log π(y|x) of DPO eq. 7.

    logits: [B, T, V]; labels: [B, T]. Returns [B] (float32). A row with no label tokens gets 0.
    """
    per_token = token_logprobs(logits, labels)
    total = per_token.sum(-1)
    if not average:
        return total
    count = (labels[:, 1:] != IGNORE_INDEX).sum(-1).clamp(min=1)
    return total / count


def selected_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log-softmax(logits)[i, targets[i]] for already-selected positions.

    logits: [N, V] (only the N positions that carry a label); targets: [N]. Returns [N] float32.
    Used by the DPO loop, which applies the LM head only at label positions instead of all B·T.
    """
    return -F.cross_entropy(logits.float(), targets, reduction="none")
