"""Per-token log-probabilities of given tokens under a causal LM's logits (shared by DPO, PPO and eval).

Causal shift: the logits at position t predict token t+1.
"""

from __future__ import annotations

import torch


def gather_logprobs(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """log softmax(logits)[..., token]: ``logits [B, T, V]``, ``tokens [B, T]`` -> ``[B, T]`` (float32).

    Computed as ``z[token] - logsumexp(z)`` so the full ``[B, T, V]`` log-softmax is never materialized twice.
    """
    logits = logits.float()
    picked = torch.gather(logits, -1, tokens.unsqueeze(-1)).squeeze(-1)
    return picked - torch.logsumexp(logits, dim=-1)


def shifted_token_logprobs(logits: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    """Log-prob of each token given its prefix: ``logits [B, L, V]``, ``input_ids [B, L]`` -> ``[B, L-1]``
    where entry t is log p(input_ids[t+1] | input_ids[:t+1])."""
    return gather_logprobs(logits[:, :-1], input_ids[:, 1:])
