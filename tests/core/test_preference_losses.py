"""Golden values for the preference losses and sequence log-probs (hand-computed or a naive loop as reference)."""

from __future__ import annotations

import math

import pytest
import torch

from app.core.logprobs import selected_logprobs, sequence_logprobs
from app.core.preference_losses import (
    bradley_terry_loss,
    dpo_loss,
    kto_kl_estimate,
    kto_loss,
    kto_mismatch_index,
    kto_stats,
    log1mexp,
    orpo_log_odds,
    orpo_loss,
    pair_stats,
    simpo_loss,
)


def test_bradley_terry_hand_computed():
    # pairs: margin 2 and margin 0 -> (log(1+e^-2) + ln 2) / 2
    loss = bradley_terry_loss(torch.tensor([2.0, 0.0]), torch.tensor([0.0, 0.0]))
    assert loss.item() == pytest.approx((math.log1p(math.exp(-2.0)) + math.log(2.0)) / 2, abs=1e-7)
    assert loss.item() == pytest.approx(0.4100378, abs=1e-6)


def test_bradley_terry_is_stable_for_huge_margins():
    loss = bradley_terry_loss(torch.tensor([-1000.0]), torch.tensor([1000.0]))
    assert loss.item() == pytest.approx(2000.0)


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
@pytest.mark.parametrize("beta", [0.01, 0.1, 1.0])
def test_dpo_loss_is_ln2_when_policy_equals_reference(beta, eps):
    logp = torch.tensor([-3.0, -10.5, -0.25])
    other = torch.tensor([-7.0, -1.0, -2.0])
    loss, rc, rr = dpo_loss(logp, other, logp.clone(), other.clone(), beta=beta, label_smoothing=eps)
    assert loss.item() == pytest.approx(math.log(2.0), abs=1e-7)
    assert torch.all(rc == 0) and torch.all(rr == 0)


def test_dpo_sigmoid_hand_computed():
    # h = (-1 - -1.5) - (-2 - -1.5) = 1.0 ; beta = 0.1 -> log(1 + e^-0.1)
    args = (torch.tensor([-1.0]), torch.tensor([-2.0]), torch.tensor([-1.5]), torch.tensor([-1.5]))
    loss, rc, rr = dpo_loss(*args, beta=0.1)
    assert loss.item() == pytest.approx(0.6443967, abs=1e-6)
    assert rc.item() == pytest.approx(0.05) and rr.item() == pytest.approx(-0.05)
    # conservative label smoothing eps = 0.2: 0.8 log(1+e^-0.1) + 0.2 log(1+e^0.1)
    smoothed, _, _ = dpo_loss(*args, beta=0.1, label_smoothing=0.2)
    assert smoothed.item() == pytest.approx(0.8 * 0.6443967 + 0.2 * 0.7443967, abs=1e-6)


def test_ipo_hand_computed():
    # h = 1, beta = 0.1 -> (1 - 1/(2*0.1))^2 = 16 ; second pair h = 5 -> 0
    loss, _, _ = dpo_loss(
        torch.tensor([-1.0, 0.0]), torch.tensor([-2.0, -5.0]), torch.tensor([-1.5, 0.0]), torch.tensor([-1.5, 0.0]),
        beta=0.1, loss_type="ipo",
    )
    assert loss.item() == pytest.approx((16.0 + 0.0) / 2)


def test_dpo_loss_rejects_bad_settings():
    x = torch.zeros(1)
    with pytest.raises(ValueError, match="beta"):
        dpo_loss(x, x, x, x, beta=0.0)
    with pytest.raises(ValueError, match="loss_type"):
        dpo_loss(x, x, x, x, loss_type="hinge")  # type: ignore[arg-type]


def test_dpo_gradient_pushes_chosen_up():
    pc = torch.tensor([-2.0], requires_grad=True)
    pr = torch.tensor([-2.0], requires_grad=True)
    loss, _, _ = dpo_loss(pc, pr, torch.tensor([-2.0]), torch.tensor([-2.0]), beta=0.5)
    loss.backward()
    # d/dh[-log σ(βh)] at h=0 is -β/2 ; h increases with pc, decreases with pr
    assert pc.grad.item() == pytest.approx(-0.25) and pr.grad.item() == pytest.approx(0.25)


def test_pair_stats():
    stats = pair_stats(torch.tensor(0.5), torch.tensor([1.0, 0.0, 3.0]), torch.tensor([0.0, 1.0, 1.0]))
    assert stats.accuracy == pytest.approx(2 / 3)
    assert pair_stats(torch.tensor(0.0), torch.zeros(4), torch.zeros(4)).accuracy == 0.5  # ties: a coin flip
    assert stats.margin == pytest.approx((1 - 1 + 2) / 3)
    assert stats.chosen == pytest.approx(4 / 3) and stats.rejected == pytest.approx(2 / 3)


def _naive_sequence_logprobs(logits, labels):
    out = []
    for b in range(logits.shape[0]):
        total = 0.0
        for t in range(1, labels.shape[1]):
            if labels[b, t] != -100:
                probs = torch.softmax(logits[b, t - 1].double(), -1)
                total += math.log(probs[labels[b, t]].item())
        out.append(total)
    return torch.tensor(out, dtype=torch.float64)


def test_sequence_logprobs_matches_naive_loop():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 7, 11, generator=gen)
    labels = torch.randint(0, 11, (3, 7), generator=gen)
    labels[0, :3] = -100  # prompt
    labels[1, 5:] = -100  # padding
    labels[2, :] = -100  # nothing to score -> 0
    got = sequence_logprobs(logits, labels)
    want = _naive_sequence_logprobs(logits, labels).double()
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    assert got[2].item() == 0.0
    counts = torch.tensor([4.0, 4.0, 1.0], dtype=torch.float64)  # label tokens at t >= 1 (row 2: none -> clamp 1)
    torch.testing.assert_close(sequence_logprobs(logits, labels, average=True), (want / counts.double()), atol=1e-5, rtol=0)


def test_selected_logprobs_matches_log_softmax():
    logits = torch.randn(5, 9)
    targets = torch.tensor([0, 3, 8, 2, 2])
    want = torch.log_softmax(logits, -1)[torch.arange(5), targets]
    torch.testing.assert_close(selected_logprobs(logits, targets), want, atol=1e-6, rtol=0)


def test_pair_stats_counts_float_noise_as_a_tie_only_within_the_tolerance():
    """Policy == reference scored in other batches: implicit-reward margins of ±1e-7 are ties (0.5), not a 1/4 score."""
    chosen, rejected = torch.tensor([1e-7, -1e-7, 2e-7, -3e-7]), torch.zeros(4)
    assert pair_stats(torch.tensor(0.0), chosen, rejected).accuracy == 0.5  # exact comparison: 2 of 4 "win"
    assert pair_stats(torch.tensor(0.0), chosen, rejected, tie_tol=0.1 * 1e-4).accuracy == 0.5
    skew = torch.tensor([1e-7, -1e-7, -2e-7, -3e-7])
    assert pair_stats(torch.tensor(0.0), skew, rejected).accuracy == 0.25
    assert pair_stats(torch.tensor(0.0), skew, rejected, tie_tol=1e-5).accuracy == 0.5
    # a real preference beyond the tolerance still counts: +0.3, −0.2 → 1 win, 1 loss
    assert pair_stats(torch.tensor(0.0), torch.tensor([0.3, -0.2]), torch.zeros(2), tie_tol=1e-5).accuracy == 0.5
    assert pair_stats(torch.tensor(0.0), torch.tensor([0.3, 2e-6]), torch.zeros(2), tie_tol=1e-5).accuracy == 0.75


# ---------------------------------------------------------------- SimPO (Meng et al. 2024, eq. 6)
def test_simpo_hand_computed():
    # chosen: sum −2.0 over 4 tokens → mean −0.5 ; rejected: sum −3.0 over 2 tokens → mean −1.5
    # β = 2: rewards β·mean = −1.0 and −3.0 ; γ = 0.5: z = −1.0 − (−3.0) − 0.5 = 1.5
    # loss = −log σ(1.5) = log(1 + e^−1.5) = log(1 + 0.2231302) = 0.2014133
    args = (torch.tensor([-2.0]), torch.tensor([-3.0]), torch.tensor([4]), torch.tensor([2]))
    loss, rc, rr = simpo_loss(*args, beta=2.0, gamma=0.5)
    assert loss.item() == pytest.approx(0.2014133, abs=1e-6)
    assert rc.item() == pytest.approx(-1.0) and rr.item() == pytest.approx(-3.0)
    # label smoothing ε = 0.1: 0.9·log(1+e^−1.5) + 0.1·log(1+e^1.5) = 0.9·0.2014133 + 0.1·1.7014133 = 0.3514133
    smoothed, _, _ = simpo_loss(*args, beta=2.0, gamma=0.5, label_smoothing=0.1)
    assert smoothed.item() == pytest.approx(0.3514133, abs=1e-6)


def test_simpo_is_length_normalised_and_reference_free():
    # the same per-token log-prob on a 10× longer rejected answer is the same reward: z = −γ → loss log(1 + e^γ)
    loss, rc, rr = simpo_loss(torch.tensor([-3.0]), torch.tensor([-30.0]), torch.tensor([3]), torch.tensor([30]), beta=2.0, gamma=1.0)
    assert rc.item() == rr.item() == pytest.approx(-2.0)
    assert loss.item() == pytest.approx(math.log1p(math.e), abs=1e-6)  # log(1 + e^1) = 1.3132617


def test_simpo_gradient_pushes_chosen_up_per_token():
    pc = torch.tensor([-4.0], requires_grad=True)
    pr = torch.tensor([-4.0], requires_grad=True)
    loss, _, _ = simpo_loss(pc, pr, torch.tensor([2]), torch.tensor([4]), beta=2.0, gamma=0.0)
    loss.backward()
    # z = 2·(−2) − 2·(−1) = −2 ; dL/dz = −σ(−z) = −σ(2) ; dz/dπ_c = β/n_c = 1, dz/dπ_r = −β/n_r = −0.5
    s = 1 / (1 + math.exp(-2.0))
    assert pc.grad.item() == pytest.approx(-s) and pr.grad.item() == pytest.approx(0.5 * s)


# ---------------------------------------------------------------- ORPO (Hong et al. 2024, eq. 6–7)
def test_log1mexp_both_branches():
    x = torch.tensor([-1e-6, -0.5, -0.6931, -0.7, -5.0, -40.0], dtype=torch.float64)
    torch.testing.assert_close(log1mexp(x), torch.log(1 - torch.exp(x)), atol=1e-9, rtol=1e-6)


def test_orpo_hand_computed_one_pair():
    # chosen: mean log-prob ln 0.5 (sum 2·ln 0.5 over 2 tokens) → P = 0.5, odds 1, log odds 0
    # rejected: mean ln 0.2 (sum 3·ln 0.2 over 3 tokens) → P = 0.2, odds 0.25, log odds ln 0.25
    # log odds ratio = 0 − ln 0.25 = ln 4 ; σ(ln 4) = 4/5 → L_OR = −log(4/5) = ln 1.25 = 0.2231436
    # L_SFT = −2·ln 0.5 / 2 = ln 2 = 0.6931472 ; λ = 0.1 → L = 0.6931472 + 0.1·0.2231436 = 0.7154615
    pc, pr = torch.tensor([2 * math.log(0.5)]), torch.tensor([3 * math.log(0.2)])
    nc, nr = torch.tensor([2]), torch.tensor([3])
    assert orpo_log_odds(pc, pr, nc, nr).item() == pytest.approx(math.log(4.0), abs=1e-6)
    loss, rc, rr = orpo_loss(pc, pr, nc, nr, lam=0.1)
    assert loss.item() == pytest.approx(0.7154615, abs=1e-6)
    assert rc.item() == pytest.approx(0.1 * math.log(0.5)) and rr.item() == pytest.approx(0.1 * math.log(0.2))
    # λ = 0 is plain SFT on the chosen response
    assert orpo_loss(pc, pr, nc, nr, lam=0.0)[0].item() == pytest.approx(math.log(2.0), abs=1e-6)


def test_orpo_nll_is_token_weighted_over_the_batch():
    # pair 1 as above; pair 2: chosen P = 0.8 over 4 tokens (log odds ln 4), rejected P = 0.5 over 1 token (log odds 0)
    # → odds term ln 1.25 for both pairs ; L_SFT = −(2·ln 0.5 + 4·ln 0.8) / (2 + 4) = (1.3862944 + 0.8925742)/6 = 0.3798114
    # L = 0.3798114 + 0.1·0.2231436 = 0.4021258
    pc = torch.tensor([2 * math.log(0.5), 4 * math.log(0.8)])
    pr = torch.tensor([3 * math.log(0.2), math.log(0.5)])
    loss, _, _ = orpo_loss(pc, pr, torch.tensor([2, 4]), torch.tensor([3, 1]), lam=0.1)
    assert loss.item() == pytest.approx(0.4021258, abs=1e-6)


# ---------------------------------------------------------------- KTO (Ethayarajh et al. 2024, eq. 7–8)
def test_kto_hand_computed():
    # β = 0.1, z0 = 0.5 ; desirable row r = π − ρ = 2 → 1 − σ(0.1·(2 − 0.5)) = 1 − σ(0.15) = 1/(1 + e^0.15) = 1/2.1618342 = 0.4625702
    # undesirable row r = −1 → 1 − σ(0.1·(0.5 − (−1))) = 1 − σ(0.15) = 0.4625702
    # λ_D = 1, λ_U = 1.5 → mean = (0.4625702 + 1.5·0.4625702)/2 = 0.5782127
    policy, ref = torch.tensor([-1.0, -4.0]), torch.tensor([-3.0, -3.0])
    desirable = torch.tensor([True, False])
    loss, rewards, z0 = kto_loss(policy, ref, desirable, torch.tensor(0.5), beta=0.1, undesirable_weight=1.5)
    assert loss.item() == pytest.approx(0.5782127, abs=1e-6)
    assert rewards.tolist() == pytest.approx([0.2, -0.1]) and z0.item() == 0.5


def test_kto_clamps_a_negative_kl_estimate_to_zero():
    # KL estimate −3 → z0 = 0: (1 − σ(0.1·2)) + (1 − σ(0.1·1)) = 0.4501660 + 0.4750208 ; mean 0.4625934
    loss, _, z0 = kto_loss(torch.tensor([-1.0, -4.0]), torch.tensor([-3.0, -3.0]), torch.tensor([1, 0]), -3.0, beta=0.1)
    assert z0.item() == 0.0 and loss.item() == pytest.approx(0.4625934, abs=1e-6)


def test_kto_policy_equals_reference_costs_half_a_weight():
    logp = torch.tensor([-2.0, -5.0, -1.0])
    loss, _, _ = kto_loss(logp, logp.clone(), torch.tensor([True, False, True]), 0.0, beta=0.3)
    assert loss.item() == pytest.approx(0.5)


def test_kto_reference_point_carries_no_gradient():
    policy = torch.tensor([-1.0, -2.0], requires_grad=True)
    kl_policy = torch.tensor([-1.0, -2.0], requires_grad=True)
    z = kto_kl_estimate(kl_policy, torch.tensor([-1.5, -1.5]))
    assert z.item() == pytest.approx(0.0)  # mean(0.5, −0.5)
    loss, _, _ = kto_loss(policy, torch.tensor([-1.0, -2.0]), torch.tensor([True, False]), z, beta=1.0)
    loss.backward()
    assert kl_policy.grad is None
    # desirable: d/dr[1 − σ(r)]/2 = −σ'(0)/2 = −1/8 ; undesirable: d/dr[1 − σ(−r)]/2 = +1/8
    assert policy.grad.tolist() == pytest.approx([-0.125, 0.125])


def test_kto_mismatch_index_rotates_by_one_like_trl():
    assert kto_mismatch_index(4).tolist() == [3, 0, 1, 2]  # TRL: KL_completion = [c[-1]] + c[:-1]


def test_kto_stats():
    rewards, desirable = torch.tensor([0.3, -0.2, 0.05, 0.1]), torch.tensor([True, False, True, False])
    stats = kto_stats(torch.tensor(0.4), rewards, desirable, reward_point=0.08)
    # desirable 0.3 > 0.08 ✓, 0.05 ✗ ; undesirable −0.2 < 0.08 ✓, 0.1 ✗ → 2/4
    assert stats.accuracy == 0.5 and stats.loss == pytest.approx(0.4)
    assert stats.chosen == pytest.approx(0.175) and stats.rejected == pytest.approx(-0.05)
    assert stats.margin == pytest.approx(0.225)
    only_good = kto_stats(torch.tensor(0.0), torch.tensor([0.1]), torch.tensor([True]), reward_point=0.0)
    assert only_good.rejected == 0.0 and only_good.accuracy == 1.0


def test_new_losses_reject_bad_settings():
    x, n = torch.zeros(1), torch.ones(1)
    with pytest.raises(ValueError, match="beta"):
        simpo_loss(x, x, n, n, beta=0.0)
    with pytest.raises(ValueError, match="label_smoothing"):
        simpo_loss(x, x, n, n, label_smoothing=0.5)
    with pytest.raises(ValueError, match="lambda"):
        orpo_loss(x - 1, x - 2, n, n, lam=-0.1)
    with pytest.raises(ValueError, match="beta"):
        kto_loss(x, x, torch.ones(1, dtype=torch.bool), 0.0, beta=-1.0)
    with pytest.raises(ValueError, match="weights"):
        kto_loss(x, x, torch.ones(1, dtype=torch.bool), 0.0, desirable_weight=0.0)
