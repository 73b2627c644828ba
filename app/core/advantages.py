"""RL advantage math for PPO and critic-free variants: GAE, whitening, KL estimators, adaptive KL, GRPO/RLOO.

Shapes: ``B`` sequences (responses), ``T`` response tokens; ``mask`` is 1.0 on real response tokens, 0.0 on padding.
Pure torch, no Ray, no I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of ``x`` over positions where ``mask`` is 1 (all positions when dim is None)."""
    if dim is None:
        return (x * mask).sum() / mask.sum().clamp(min=1)
    return (x * mask).sum(dim) / mask.sum(dim).clamp(min=1)


def masked_var(x: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    """Variance of the masked entries of ``x`` (Bessel-corrected by default, as in the PPO reference implementations)."""
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    n = mask.sum()
    if unbiased and n > 1:
        var = var * n / (n - 1)
    return var


def whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, eps: float = 1e-8) -> torch.Tensor:
    """Normalize masked entries to mean 0 (optional) and std 1; padding stays 0. ``x, mask: [B, T]``."""
    mean, var = masked_mean(x, mask), masked_var(x, mask)
    out = (x - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        out = out + mean
    return out * mask


def kl_estimate(logp: torch.Tensor, ref_logp: torch.Tensor, kind: str = "k1") -> torch.Tensor:
    """Per-token estimate of KL(pi || ref) from samples of pi (Schulman, "Approximating KL divergence", 2020).

    With ``r = ref_logp - logp`` (log of p_ref/p_pi at the sampled token):
    k1 = -r (unbiased, can be negative); k2 = r^2 / 2 (low variance, biased); k3 = (e^r - 1) - r (unbiased, >= 0).
    ``logp, ref_logp: [B, T]`` -> ``[B, T]``.
    """
    log_ratio = ref_logp - logp
    if kind == "k1":
        return -log_ratio
    if kind == "k2":
        return 0.5 * log_ratio**2
    if kind == "k3":
        return torch.expm1(log_ratio) - log_ratio
    raise ValueError(f"unknown KL estimator {kind!r} (k1, k2, k3)")


def shape_rewards(scores: torch.Tensor, kl: torch.Tensor, mask: torch.Tensor, kl_coef: float) -> torch.Tensor:
    """Per-token rewards: ``-kl_coef * kl`` on every response token plus the sequence score on its last real token.

    ``scores: [B]``, ``kl, mask: [B, T]`` -> ``[B, T]`` (Ziegler et al. 2019, eq. 2; Stiennon et al. 2020).
    """
    rewards = -kl_coef * kl * mask
    last = (mask.sum(1).long() - 1).clamp(min=0)
    return rewards.scatter_add(1, last[:, None], scores[:, None].to(rewards.dtype))


def compute_gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0, lam: float = 0.95
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized advantage estimation (Schulman et al. 2016, eq. 16) over right-padded responses.

    delta_t = r_t + gamma * V_{t+1} - V_t;  A_t = delta_t + gamma * lam * A_{t+1}; V after the last real token is 0.
    ``rewards, values, mask: [B, T]`` -> ``(advantages, returns)`` both ``[B, T]``, zero on padding; returns = A + V.
    """
    B, T = rewards.shape
    rewards, values = rewards * mask, values * mask
    adv = torch.zeros_like(rewards)
    next_adv = torch.zeros(B, dtype=rewards.dtype)
    next_value = torch.zeros(B, dtype=rewards.dtype)
    for t in reversed(range(T)):
        m = mask[:, t]
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        a = delta + gamma * lam * next_adv
        adv[:, t] = a * m
        # on padding keep carrying the "after the end" state (0) so right padding never leaks in
        next_adv = a * m
        next_value = values[:, t] * m
    return adv, (adv + values) * mask


def group_advantages(scores: torch.Tensor, group_size: int, kind: str = "grpo", eps: float = 1e-6) -> torch.Tensor:
    """Critic-free sequence advantages for ``group_size`` samples per prompt; ``scores: [B]`` grouped contiguously.

    grpo: (r - mean_group) / (std_group + eps)  (Shao et al. 2024, DeepSeekMath eq. 3, unbiased std as in TRL).
    rloo: r - mean of the *other* samples = (k / (k - 1)) * (r - mean_group)  (Ahmadian et al. 2024).
    Returns ``[B]``; broadcast over tokens with the response mask.
    """
    if scores.numel() % group_size:
        raise ValueError(f"{scores.numel()} scores do not split into groups of {group_size}")
    if group_size < 2:
        raise ValueError("critic-free advantages need group_size >= 2")
    g = scores.view(-1, group_size)
    mean = g.mean(1, keepdim=True)
    if kind == "grpo":
        out = (g - mean) / (g.std(1, keepdim=True) + eps)
    elif kind == "rloo":
        out = (g - mean) * group_size / (group_size - 1)
    else:
        raise ValueError(f"unknown group estimator {kind!r} (grpo, rloo)")
    return out.reshape(-1)


@dataclass
class AdaptiveKLController:
    """Adaptive KL coefficient (Ziegler et al. 2019, sec. 2.2): beta <- beta * (1 + K * clip(KL/target - 1, ±0.2)),
    with ``K = n_steps / horizon``. With ``target=None`` the coefficient stays fixed."""

    value: float
    target: float | None = 6.0
    horizon: int = 10000

    def update(self, current_kl: float, n_steps: int) -> float:
        if self.target is None or not math.isfinite(current_kl):
            return self.value
        error = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_steps / self.horizon
        return self.value

    def state_dict(self) -> dict:
        return {"value": self.value, "target": self.target, "horizon": self.horizon}

    @classmethod
    def from_state_dict(cls, state: dict) -> "AdaptiveKLController":
        return cls(value=float(state["value"]), target=state["target"], horizon=int(state["horizon"]))
