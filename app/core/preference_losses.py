"""Preference losses on per-pair scores: Bradley–Terry (reward models), DPO sigmoid with label smoothing, IPO.

Pure tensor math (no Ray, no I/O); golden-tested in tests/core/test_preference_losses.py.

Notation (all tensors shape [B], one entry per preference pair):
    r_c, r_r        reward-model scores of the chosen / rejected response
    π_c, π_r        policy log π(y|x) of chosen / rejected (sum over response tokens, or mean for IPO)
    ρ_c, ρ_r        the same under the frozen reference model
    h = (π_c − ρ_c) − (π_r − ρ_r)    difference of log-ratios
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

PreferenceLossType = Literal["sigmoid", "ipo"]


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
