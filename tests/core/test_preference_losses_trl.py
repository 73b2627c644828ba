"""Numeric cross-check of app/core/preference_losses against TRL 1.16's own loss code on the same log-probs (≤ 1e-5).

No model is built: TRL's loss methods are called unbound with a stub ``self`` carrying only the attributes they read
(and, for the DPO/KTO trainers whose loss code runs the model, a stub model that returns fixed per-token log-probs).
"""

from __future__ import annotations

import types
from collections import defaultdict

import pytest
import torch

from app.core.preference_losses import dpo_loss, kto_kl_estimate, kto_loss, kto_mismatch_index, orpo_loss, simpo_loss

pytest.importorskip("trl")
ATOL = 1e-5


def _accelerator():
    return types.SimpleNamespace(device=torch.device("cpu"), gather_for_metrics=lambda x: x, gather=lambda x: x,
                                 unwrap_model=lambda m: m)


def _pairs(seed: int, n: int = 16):
    """Summed response log-probs and token counts of n pairs (float64, like app.core.logprobs.sequence_logprobs)."""
    gen = torch.Generator().manual_seed(seed)
    tokens_c = torch.randint(1, 40, (n,), generator=gen)
    tokens_r = torch.randint(1, 40, (n,), generator=gen)
    per_token_c = -torch.rand(n, generator=gen, dtype=torch.float64) * 3 - 1e-3
    per_token_r = -torch.rand(n, generator=gen, dtype=torch.float64) * 3 - 1e-3
    return per_token_c * tokens_c, per_token_r * tokens_r, tokens_c, tokens_r


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("beta, gamma, eps", [(2.0, 0.5, 0.0), (2.5, 1.4, 0.0), (0.1, 0.5, 0.2)])
def test_simpo_matches_trl_cpo_trainer(seed, beta, gamma, eps):
    from trl.experimental.cpo import CPOTrainer

    pc, pr, nc, nr = _pairs(seed)
    stub = types.SimpleNamespace(alpha=0.0, loss_type="simpo", simpo_gamma=gamma, beta=beta, label_smoothing=eps,
                                 accelerator=_accelerator())
    # TRL's CPOTrainer averages log-probs over the completion tokens for loss_type="simpo" (average_log_prob=True)
    trl_losses, trl_rc, trl_rr = CPOTrainer.cpo_loss(stub, pc / nc, pr / nr)
    ours, rc, rr = simpo_loss(pc, pr, nc, nr, beta=beta, gamma=gamma, label_smoothing=eps)
    assert abs(ours.item() - trl_losses.mean().item()) <= ATOL
    torch.testing.assert_close(rc, trl_rc, atol=ATOL, rtol=0)
    torch.testing.assert_close(rr, trl_rr, atol=ATOL, rtol=0)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("lam", [0.1, 0.5])
def test_orpo_matches_trl_orpo_trainer(seed, lam):
    from trl.experimental.orpo import ORPOTrainer

    pc, pr, nc, nr = _pairs(seed)
    stub = types.SimpleNamespace(beta=lam, accelerator=_accelerator())
    ratio_losses, trl_rc, trl_rr, _, trl_log_odds = ORPOTrainer.odds_ratio_loss(stub, pc / nc, pr / nr)
    # TRL: loss = policy_nll_loss − mean(λ·log σ(log odds)), nll = token-mean cross-entropy of the chosen sequences
    trl_nll = -pc.sum() / nc.sum()
    trl_loss = trl_nll - ratio_losses.mean()
    ours, rc, rr = orpo_loss(pc, pr, nc, nr, lam=lam)
    assert abs(ours.item() - trl_loss.item()) <= ATOL
    torch.testing.assert_close(rc.float(), trl_rc, atol=ATOL, rtol=0)
    torch.testing.assert_close(rr.float(), trl_rr, atol=ATOL, rtol=0)


def _stub_model(per_sequence: dict[int, torch.Tensor]):
    """A callable standing in for TRL's fused-LM-head model: returns log_probs [N, T−1] whose row sums are the given
    sequence log-probs (the first position carries it, the rest 0), keyed by the id() of the input_ids it is given."""

    def forward(input_ids, labels=None, **_):
        logps = per_sequence[id(input_ids)]
        n, width = input_ids.shape
        log_probs = torch.zeros(n, width - 1, dtype=logps.dtype)
        log_probs[:, 0] = logps
        zeros = torch.zeros(n, width - 1)
        return types.SimpleNamespace(log_probs=log_probs, entropy=zeros, mean_logits=zeros,
                                     is_top1=torch.zeros(n, width - 1, dtype=torch.bool), aux_loss=None)

    return forward


def _completion_batch(n: int, tokens: torch.Tensor, width: int = 48):
    """input_ids / attention_mask / completion_mask for n sequences: 1 prompt token then tokens[i] completion tokens."""
    ids = torch.ones(n, width, dtype=torch.long)
    completion = torch.zeros(n, width, dtype=torch.long)
    for i, k in enumerate(tokens.tolist()):
        completion[i, 1 : 1 + k] = 1
    return ids, torch.ones(n, width, dtype=torch.long), completion


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("loss_type, beta, eps", [("sigmoid", 0.1, 0.0), ("sigmoid", 0.5, 0.0), ("ipo", 0.1, 0.0)])
def test_dpo_and_ipo_match_trl_dpo_trainer(seed, loss_type, beta, eps):
    from trl import DPOTrainer

    pc, pr, nc, nr = _pairs(seed)
    ref_c, ref_r = pc + torch.randn(pc.shape, dtype=torch.float64), pr + torch.randn(pr.shape, dtype=torch.float64)
    ids, attention, completion = _completion_batch(2 * len(pc), torch.cat([nc, nr]))
    inputs = {"input_ids": ids, "attention_mask": attention, "completion_mask": completion,
              "ref_chosen_logps": ref_c, "ref_rejected_logps": ref_r}
    stub = types.SimpleNamespace(
        model=types.SimpleNamespace(training=True), accelerator=_accelerator(), aux_loss_enabled=False,
        ld_alpha=None, precompute_ref_logps=True, f_divergence_type="reverse_kl", loss_types=[loss_type],
        loss_weights=[1.0], beta=beta, label_smoothing=eps, use_weighting=False, _total_train_tokens=0, _tp_size=1,
        _metrics={"train": defaultdict(list), "eval": defaultdict(list)},
    )
    trl_loss = DPOTrainer._compute_loss(stub, _stub_model({id(ids): torch.cat([pc, pr])}), inputs, False)
    if loss_type == "ipo":  # this platform passes length-averaged log-probs to IPO (app/train/dpo.py)
        pc, pr, ref_c, ref_r = pc / nc, pr / nr, ref_c / nc, ref_r / nr
    ours, _, _ = dpo_loss(pc, pr, ref_c, ref_r, beta=beta, loss_type=loss_type, label_smoothing=eps)
    assert abs(ours.item() - trl_loss.item()) <= ATOL


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("beta, w_d, w_u", [(0.1, 1.0, 1.0), (0.5, 1.0, 1.33)])
def test_kto_matches_trl_kto_trainer(seed, beta, w_d, w_u):
    from trl import KTOTrainer

    gen = torch.Generator().manual_seed(seed)
    n = 8
    policy = -torch.rand(n, generator=gen, dtype=torch.float64) * 20
    reference = policy + torch.randn(n, generator=gen, dtype=torch.float64)
    kl_policy = -torch.rand(n, generator=gen, dtype=torch.float64) * 20
    kl_reference = kl_policy - torch.rand(n, generator=gen, dtype=torch.float64)  # KL estimate > 0: z0 is not clamped
    desirable = torch.tensor([True, False, True, True, False, False, True, False])
    tokens = torch.randint(1, 20, (n,), generator=gen)
    ids, attention, completion = _completion_batch(n, tokens)
    kl_ids, kl_attention, kl_completion = _completion_batch(n, tokens[kto_mismatch_index(n)])
    inputs = {"input_ids": ids, "attention_mask": attention, "completion_mask": completion, "KL_input_ids": kl_ids,
              "KL_attention_mask": kl_attention, "KL_completion_mask": kl_completion, "label": desirable,
              "ref_logps": reference, "ref_KL_logps": kl_reference}
    stub = types.SimpleNamespace(
        model=types.SimpleNamespace(training=True), accelerator=_accelerator(), calculate_KL=True,
        precompute_ref_logps=True, aux_loss_enabled=False, loss_type="kto", beta=beta, desirable_weight=w_d,
        undesirable_weight=w_u, _total_train_tokens=0, _tp_size=1,
        _metrics={"train": defaultdict(list), "eval": defaultdict(list)},
    )
    stub._compute_kl_logps = types.MethodType(KTOTrainer._compute_kl_logps, stub)
    model = _stub_model({id(ids): policy, id(kl_ids): kl_policy})
    trl_loss = KTOTrainer._compute_loss(stub, model, inputs, False)
    z = kto_kl_estimate(kl_policy, kl_reference)
    ours, _, z0 = kto_loss(policy, reference, desirable, z, beta=beta, desirable_weight=w_d, undesirable_weight=w_u)
    assert abs(ours.item() - trl_loss.item()) <= ATOL
    assert z0.item() == pytest.approx(stub._metrics["train"]["kl"][-1], abs=ATOL)
