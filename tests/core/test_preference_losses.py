"""Golden values for the preference losses and sequence log-probs (hand-computed or a naive loop as reference)."""

from __future__ import annotations

import math

import pytest
import torch

from app.core.logprobs import selected_logprobs, sequence_logprobs
from app.core.preference_losses import bradley_terry_loss, dpo_loss, pair_stats


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
