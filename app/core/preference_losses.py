"""Preference losses: Bradley–Terry (reward models), DPO sigmoid with label smoothing, IPO, SimPO, ORPO, KTO.

Pure tensor math (no Ray, no I/O); golden-tested (by hand and against TRL 1.16) in tests/core/test_preference_losses.py.

Notation (all tensors shape [B], one entry per preference pair, or per row for KTO's unpaired data):
    r_c, r_r        reward-model scores of the chosen / rejected response
    π_c, π_r        policy log π(y|x) of chosen / rejected (sum over response tokens, or mean for IPO)
    ρ_c, ρ_r        the same under the frozen reference model
    n_c, n_r        number of response tokens scored (|y_w|, |y_l|): SimPO and ORPO use the means π/n
    h = (π_c − ρ_c) − (π_r − ρ_r)    difference of log-ratios

Reference-free objectives (SimPO, ORPO) take no ρ: callers need no reference model or precomputed log-probs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

PreferenceLossType = Literal["sigmoid", "ipo"]
REFERENCE_FREE_LOSSES = ("simpo", "orpo")  # objectives that never read a reference model


def bradley_terry_loss(chosen_scores: torch.Tensor, rejected_scores: torch.Tensor) -> torch.Tensor:
    """Bradley–Terry negative log-likelihood, mean over pairs: −log σ(r_c − r_r) (Ouyang et al. 2022, eq. 1).

    chosen_scores, rejected_scores: [B]. Returns a scalar. Uses logsigmoid (stable for large margins).
    """
    return -F.logsigmoid(chosen_scores - rejected_scores).mean()


@dataclass(frozen=True)
class PreferenceStats:
    """Per-batch metrics shared by reward modelling and DPO (all Python floats)."""

    loss: float
    accuracy: float  # fraction of pairs with chosen score > rejected score (a tie counts 1/2)
    margin: float  # mean (chosen − rejected) score
    chosen: float  # mean chosen score (DPO: implicit reward β(π_c − ρ_c))
    rejected: float  # mean rejected score


# Sequence log-probs summed in float32 from differently packed batches differ by ~1e-6 nats for the same weights:
# below this, a DPO log-ratio difference is a tie, not a preference.
LOGPROB_TIE_TOL = 1e-4


def pair_stats(loss: torch.Tensor, chosen: torch.Tensor, rejected: torch.Tensor, tie_tol: float = 0.0) -> PreferenceStats:
    """Detach and summarise a batch: accuracy = mean(1[c − r > t] + ½·1[|c − r| ≤ t]), margin = mean(c − r).

    Ties count one half (a coin flip), so an untrained DPO policy (implicit rewards 0 up to float noise) scores 0.5:
    DPO passes ``tie_tol = β·LOGPROB_TIE_TOL`` so that noise (policy == reference, scored in other batches) is a tie.
    """
    chosen, rejected = chosen.detach().float(), rejected.detach().float()
    diff = chosen - rejected
    return PreferenceStats(
        loss=float(loss.detach()),
        accuracy=float(((diff > tie_tol).float() + 0.5 * (diff.abs() <= tie_tol).float()).mean()),
        margin=float(diff.mean()),
        chosen=float(chosen.mean()),
        rejected=float(rejected.mean()),
    )


def dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float = 0.1,
    loss_type: PreferenceLossType = "sigmoid",
    label_smoothing: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """DPO-family loss on log-probs of a batch of pairs. All inputs [B]; returns (loss scalar, rewards_c [B], rewards_r [B]).

    sigmoid (Rafailov et al. 2023, eq. 7, with conservative label smoothing ε of Mitchell 2023):
        L = −(1−ε) log σ(β h) − ε log σ(−β h)
    ipo (Azar et al. 2023, eq. 17):
        L = (h − 1/(2β))²        (callers pass length-averaged log-probs, as in the paper's implementation)
    The implicit rewards β(π − ρ) are returned detached, for the rewards/chosen, rewards/rejected metrics.
    With policy == reference, h = 0 and the sigmoid loss is ln 2 for every ε.
    """
    if beta <= 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    if not 0.0 <= label_smoothing < 0.5:
        raise ValueError(f"label_smoothing must be in [0, 0.5), got {label_smoothing}")
    chosen_ratio = policy_chosen - ref_chosen
    rejected_ratio = policy_rejected - ref_rejected
    h = chosen_ratio - rejected_ratio
    if loss_type == "sigmoid":
        losses = -(1 - label_smoothing) * F.logsigmoid(beta * h) - label_smoothing * F.logsigmoid(-beta * h)
    elif loss_type == "ipo":
        losses = (h - 1 / (2 * beta)) ** 2
    else:
        raise ValueError(f"unknown loss_type {loss_type!r} (known: sigmoid, ipo)")
    return losses.mean(), (beta * chosen_ratio).detach(), (beta * rejected_ratio).detach()


def _mean_logps(logps: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Length-normalised log-prob π/n per sequence ([B] / [B], n clamped to ≥ 1)."""
    return logps / tokens.to(logps.dtype).clamp(min=1)


def simpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    chosen_tokens: torch.Tensor,
    rejected_tokens: torch.Tensor,
    beta: float = 2.0,
    gamma: float = 0.5,
    label_smoothing: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """SimPO (Meng et al. 2024, eq. 6): reference-free, length-normalised, with a target reward margin γ.

        L = −log σ( β·π_c/n_c − β·π_r/n_r − γ )          (mean over pairs)

    With label smoothing ε (as TRL's CPOTrainer loss_type="simpo"): −(1−ε) log σ(z) − ε log σ(−z), z as above.
    policy_*: summed response log-probs [B]; *_tokens: response token counts [B]. Returns (loss scalar,
    rewards_c [B], rewards_r [B]) with the implicit rewards β·π/n detached (SimPO's reward, eq. 4).
    """
    if beta <= 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    if not 0.0 <= label_smoothing < 0.5:
        raise ValueError(f"label_smoothing must be in [0, 0.5), got {label_smoothing}")
    rewards_c = beta * _mean_logps(policy_chosen, chosen_tokens)
    rewards_r = beta * _mean_logps(policy_rejected, rejected_tokens)
    z = rewards_c - rewards_r - gamma
    losses = -(1 - label_smoothing) * F.logsigmoid(z) - label_smoothing * F.logsigmoid(-z)
    return losses.mean(), rewards_c.detach(), rewards_r.detach()


def log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 − eˣ) for x < 0, stable on both sides of −ln 2 (Mächler 2012): log(−expm1(x)) near 0, log1p(−eˣ) below."""
    return torch.where(x > -0.6931471805599453, torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))


def orpo_log_odds(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, chosen_tokens: torch.Tensor,
                  rejected_tokens: torch.Tensor) -> torch.Tensor:
    """log( odds(y_w|x) / odds(y_l|x) ) with odds(y|x) = P/(1−P), P = exp(π/n) (ORPO eq. 4–5). Inputs [B]; returns [B].

    log odds = log P − log(1 − P) = π/n − log1mexp(π/n).
    """
    mean_c, mean_r = _mean_logps(policy_chosen, chosen_tokens), _mean_logps(policy_rejected, rejected_tokens)
    return (mean_c - log1mexp(mean_c)) - (mean_r - log1mexp(mean_r))


def orpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    chosen_tokens: torch.Tensor,
    rejected_tokens: torch.Tensor,
    lam: float = 0.1,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """ORPO (Hong et al. 2024, eq. 6–7): SFT NLL on the chosen response plus λ times the odds-ratio loss; reference-free.

        L_SFT = −Σ_b π_c[b] / Σ_b n_c[b]               (token-weighted mean NLL of the chosen responses in the batch)
        L_OR  = −mean_b log σ( log odds_c − log odds_r ) (see :func:`orpo_log_odds`)
        L     = L_SFT + λ·L_OR

    policy_*: summed response log-probs [B]; *_tokens: response token counts [B]. Returns (loss scalar,
    rewards_c [B], rewards_r [B]) with rewards λ·π/n detached (TRL's logging convention). TRL's ORPOTrainer computes
    the NLL over prompt + response tokens; here, as in this platform's SFT, only the response tokens are trained.
    """
    if lam < 0:
        raise ValueError(f"lambda must be >= 0, got {lam}")
    nll = -policy_chosen.sum() / chosen_tokens.to(policy_chosen.dtype).clamp(min=1).sum()
    odds_term = F.logsigmoid(orpo_log_odds(policy_chosen, policy_rejected, chosen_tokens, rejected_tokens))
    loss = nll - lam * odds_term.mean()
    rewards_c = lam * _mean_logps(policy_chosen, chosen_tokens)
    rewards_r = lam * _mean_logps(policy_rejected, rejected_tokens)
    return loss, rewards_c.detach(), rewards_r.detach()


def kto_mismatch_index(n: int) -> torch.Tensor:
    """[n] row whose completion is paired with row i's prompt for KTO's KL estimate: i − 1 (row 0 takes row n − 1).

    The same rotation as TRL's KTOTrainer (``[c[-1]] + c[:-1]``): every prompt gets a completion written for another.
    """
    return torch.arange(n).roll(1)


def kto_kl_estimate(kl_policy: torch.Tensor, kl_reference: torch.Tensor) -> torch.Tensor:
    """KTO's reference point before clamping: mean over mismatched pairs of log π(y'|x) − log π_ref(y'|x). [B'] → scalar.

    Ethayarajh et al. 2024, eq. 7: z0 = KL(π_θ(y'|x) ‖ π_ref(y'|x)) estimated on (x, y') with y' from another row.
    Data-parallel callers average this over ranks before :func:`kto_loss` clamps it (TRL gathers, then clamps).
    """
    return (kl_policy - kl_reference).mean()


def kto_loss(
    policy: torch.Tensor,
    reference: torch.Tensor,
    desirable: torch.Tensor,
    kl_estimate: torch.Tensor | float,
    beta: float = 0.1,
    desirable_weight: float = 1.0,
    undesirable_weight: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """KTO (Ethayarajh et al. 2024, eq. 8) on unpaired rows, each labelled desirable or not.

        r   = π − ρ                         implied reward (log-ratio), [B]
        z0  = max(0, kl_estimate), detached (no gradient flows through the reference point)
        L_i = λ_D (1 − σ(β (r_i − z0)))     if desirable
              λ_U (1 − σ(β (z0 − r_i)))     otherwise
        L   = mean_i L_i

    policy, reference: summed response log-probs [B]; desirable: [B] bool. Returns (loss scalar, rewards β·r [B]
    detached, z0 scalar detached). With π = ρ and z0 = 0 every row costs λ/2.
    """
    if beta <= 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    if desirable_weight <= 0 or undesirable_weight <= 0:
        raise ValueError(f"desirable/undesirable weights must be > 0, got {desirable_weight}, {undesirable_weight}")
    z0 = torch.as_tensor(kl_estimate, dtype=policy.dtype).detach().clamp(min=0)
    ratio = policy - reference
    desirable = desirable.to(torch.bool)
    losses = torch.where(
        desirable,
        desirable_weight * (1 - torch.sigmoid(beta * (ratio - z0))),
        undesirable_weight * (1 - torch.sigmoid(beta * (z0 - ratio))),
    )
    return losses.mean(), (beta * ratio).detach(), z0


def kto_stats(loss: torch.Tensor, rewards: torch.Tensor, desirable: torch.Tensor, reward_point: float,
              tie_tol: float = 0.0) -> PreferenceStats:
    """Summarise a KTO batch: chosen/rejected = mean reward of desirable/undesirable rows (0 when a side is absent),
    margin = chosen − rejected, accuracy = fraction of rows on their label's side of the reference point (tie: 1/2).

    rewards: β·(π − ρ) [B]; desirable: [B] bool; reward_point: β·z0, the reference point in reward units.
    """
    rewards, desirable = rewards.detach().float(), desirable.to(torch.bool)
    signed = torch.where(desirable, rewards - reward_point, reward_point - rewards)
    accuracy = float(((signed > tie_tol).float() + 0.5 * (signed.abs() <= tie_tol).float()).mean())
    chosen = float(rewards[desirable].mean()) if bool(desirable.any()) else 0.0
    rejected = float(rewards[~desirable].mean()) if bool((~desirable).any()) else 0.0
    return PreferenceStats(loss=float(loss.detach()), accuracy=accuracy, margin=chosen - rejected, chosen=chosen, rejected=rejected)
