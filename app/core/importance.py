"""Off-policy correction between the rollout engine and the trainer: truncated (TIS) and masked (MIS) importance sampling.

A rollout engine (vLLM, or a rollout worker holding an older adapter version in async mode) samples token ``y_t`` from
``mu`` and reports ``log mu(y_t)``; the trainer's PPO ratio is taken against ``pi_old`` (its own log-probs before the
update). The per-token importance ratio between the two is

    rho_t = pi_old(y_t) / mu(y_t) = exp(old_logp_t - rollout_logp_t)

- TIS (Yao et al. 2025, "Your efficient RL framework secretly brings you off-policy RL training"): every token's
  PPO term is multiplied by the detached weight ``min(rho_t, cap)``.
- MIS (masked IS; Liu et al. 2025, "When speed kills stability"): tokens (``level='token'``) or whole sequences
  (``level='sequence'``, by the geometric mean of the sequence's ratios) whose ratio falls outside ``[low, cap]`` are
  rejected: they leave the loss mask, so they count neither in the numerator nor in the token-mean denominator; the
  kept tokens get the IS weight ``rho_t`` (<= cap by construction).

Shapes: ``[B, T]`` per response token, ``mask`` 1.0 on tokens that carry loss. Weights are detached (no gradient flows
through the correction). Pure torch, no I/O.
"""

from __future__ import annotations

import torch

from app.core.advantages import masked_mean

MODES = ("none", "tis", "mis")


def log_ratio(old_logp: torch.Tensor, rollout_logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``log rho = old_logp - rollout_logp`` on real tokens, 0 elsewhere (so padding never overflows ``exp``)."""
    return (old_logp - rollout_logp) * mask


def tis_weights(old_logp: torch.Tensor, rollout_logp: torch.Tensor, mask: torch.Tensor, cap: float) -> torch.Tensor:
    """Truncated IS weights ``min(rho, cap) * mask``: ``[B, T]``, detached."""
    if cap <= 0:
        raise ValueError(f"TIS cap must be > 0, got {cap}")
    rho = torch.exp(log_ratio(old_logp, rollout_logp, mask).detach())
    return torch.clamp(rho, max=cap) * mask


def mis_mask(old_logp: torch.Tensor, rollout_logp: torch.Tensor, mask: torch.Tensor, cap: float, low: float = 0.0,
             level: str = "token") -> torch.Tensor:
    """Acceptance mask of masked IS: 1.0 where the ratio lies in ``[low, cap]`` (and ``mask`` is 1), else 0.

    ``level='token'``: per-token ``rho_t``; ``level='sequence'``: the whole row is kept or dropped by its geometric-mean
    ratio ``exp(mean_t log rho_t)`` over its real tokens. Returns ``[B, T]``.
    """
    if cap <= 0 or low < 0 or low > cap:
        raise ValueError(f"MIS bounds must satisfy 0 <= low <= cap and cap > 0, got low={low} cap={cap}")
    lr = log_ratio(old_logp, rollout_logp, mask).detach()
    if level == "token":
        rho = torch.exp(lr)
    elif level == "sequence":
        rho = torch.exp(masked_mean(lr, mask, dim=1))[:, None].expand_as(lr)
    else:
        raise ValueError(f"MIS level must be 'token' or 'sequence', got {level!r}")
    return ((rho >= low) & (rho <= cap)).to(mask.dtype) * mask


def correction(mode: str, old_logp: torch.Tensor, rollout_logp: torch.Tensor, mask: torch.Tensor, cap: float = 2.0,
               low: float = 0.0, level: str = "token") -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """The loss ``weights`` and loss ``mask`` for ``mode`` in ``none | tis | mis`` (both ``[B, T]``, detached).

    none: weights 1, mask unchanged. tis: weights ``min(rho, cap)``, mask unchanged. mis: mask ``mis_mask``, weights
    ``rho`` on kept tokens. Diagnostics: ``is_ratio_mean`` (mean rho over real tokens), ``is_ratio_max``,
    ``is_truncated_frac`` (tis: share of tokens with rho > cap) / ``is_rejected_frac`` (mis: share of tokens dropped),
    ``rollout_kl`` (k3 estimate of KL(mu || pi_old) per token: E_mu[rho - 1 - log rho]), ``logp_diff_max``
    (max |log pi_old - log mu| over real tokens: engine/trainer numerics when the policy lag is 0).
    """
    lr = log_ratio(old_logp, rollout_logp, mask).detach()
    rho = torch.exp(lr)
    n = mask.sum().clamp(min=1)
    info = {
        "is_ratio_mean": (rho * mask).sum() / n,
        "is_ratio_max": (rho * mask).max() if mask.any() else torch.zeros(()),
        "rollout_kl": ((rho - 1 - lr) * mask).sum() / n,
        "logp_diff_max": (lr.abs() * mask).max() if mask.any() else torch.zeros(()),
    }
    if mode == "none":
        return torch.ones_like(mask), mask, info
    if mode == "tis":
        info["is_truncated_frac"] = ((rho > cap).to(mask.dtype) * mask).sum() / n
        return tis_weights(old_logp, rollout_logp, mask, cap), mask, info
    if mode == "mis":
        keep = mis_mask(old_logp, rollout_logp, mask, cap, low, level)
        info["is_rejected_frac"] = (mask - keep).sum() / n
        return rho * keep, keep, info
    raise ValueError(f"importance correction mode must be one of {MODES}, got {mode!r}")
