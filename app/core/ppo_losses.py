"""PPO objective pieces (Schulman et al. 2017): clipped policy loss, clipped value loss, entropy, diagnostics.

Shapes: ``[B, T]`` per response token with ``mask`` 1.0 on real tokens. Losses are token means over the mask.
"""

from __future__ import annotations

import torch

from app.core.advantages import masked_mean


def policy_loss(
    logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, clip: float = 0.2,
    weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clipped surrogate, PPO eq. 7: ``L = -E[min(rho * A, clip(rho, 1-eps, 1+eps) * A)]``, ``rho = exp(logp - old_logp)``.

    ``weights`` (``[B, T]``, detached; None = 1): per-token off-policy correction factors multiplying each token's
    term (TIS/MIS from ``app.core.importance``); the mean stays over ``mask``.

    Returns the scalar loss and detached diagnostics: ``clip_frac`` (share of tokens where the clipped branch is
    active) and ``approx_kl`` = E[(rho - 1) - log rho] (k3 estimate of KL(old || new)).
    """
    log_ratio = logp - old_logp
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip, 1.0 + clip)
    per_token = torch.maximum(unclipped, clipped)
    loss = masked_mean(per_token if weights is None else per_token * weights, mask)
    with torch.no_grad():
        clip_frac = masked_mean((clipped > unclipped).float(), mask)
        approx_kl = masked_mean(torch.expm1(log_ratio) - log_ratio, mask)
    return loss, {"clip_frac": clip_frac, "approx_kl": approx_kl}


def value_loss(
    values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor, clip: float | None = 0.2
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clipped value loss (PPO2 baselines): ``0.5 * E[max((V - R)^2, (V_old + clip(V - V_old, ±c) - R)^2)]``.

    With ``clip=None`` it is the plain ``0.5 * E[(V - R)^2]``. Returns the loss and ``vf_clip_frac``.
    """
    err = (values - returns) ** 2
    if clip is None:
        return 0.5 * masked_mean(err, mask), {"vf_clip_frac": torch.zeros(())}
    v_clipped = old_values + torch.clamp(values - old_values, -clip, clip)
    err_clipped = (v_clipped - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(err, err_clipped), mask)
    with torch.no_grad():
        frac = masked_mean((err_clipped > err).float(), mask)
    return loss, {"vf_clip_frac": frac}


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Per-position entropy of the categorical ``softmax(logits)``: ``[..., V]`` -> ``[...]``, H = logsumexp(z) - sum p z."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(-1)
