"""Golden tests for TIS / MIS off-policy correction (app/core/importance.py), computed by hand."""

import math

import pytest
import torch

from app.core.importance import correction, mis_mask, tis_weights
from app.core.ppo_losses import policy_loss

# rho = pi_old / mu per token: 0.5, 1.0, 1.5, 3.0
RHO = [0.5, 1.0, 1.5, 3.0]
OLD = torch.tensor([[math.log(r) for r in RHO]])
ROLL = torch.zeros(1, 4)
ONES = torch.ones(1, 4)
ADV = torch.tensor([[1.0, 2.0, 3.0, 4.0]])


def test_tis_truncates_at_cap():
    assert tis_weights(OLD, ROLL, ONES, cap=2.0).tolist()[0] == pytest.approx([0.5, 1.0, 1.5, 2.0])
    assert tis_weights(OLD, ROLL, ONES, cap=1.0).tolist()[0] == pytest.approx([0.5, 1.0, 1.0, 1.0])


def test_padding_never_overflows():
    # a masked position with a huge log-ratio gets weight 0, not inf/nan
    old, mask = torch.tensor([[0.0, 500.0]]), torch.tensor([[1.0, 0.0]])
    assert tis_weights(old, torch.zeros(1, 2), mask, cap=2.0).tolist() == [[1.0, 0.0]]
    assert mis_mask(old, torch.zeros(1, 2), mask, cap=2.0).tolist() == [[1.0, 0.0]]


def test_mis_token_level_bounds():
    assert mis_mask(OLD, ROLL, ONES, cap=2.0).tolist() == [[1.0, 1.0, 1.0, 0.0]]
    assert mis_mask(OLD, ROLL, ONES, cap=2.0, low=0.6).tolist() == [[0.0, 1.0, 1.0, 0.0]]


def test_mis_sequence_level_uses_geometric_mean():
    # rows: ratios (2, 2) -> gm 2 kept; (4, 1) -> gm 2 kept; (9, 1) -> gm 3 dropped; (1.5, pad) -> gm 1.5 kept
    old = torch.tensor([[2.0, 2.0], [4.0, 1.0], [9.0, 1.0], [1.5, 1e6]]).log()
    mask = torch.tensor([[1.0, 1.0], [1.0, 1.0], [1.0, 1.0], [1.0, 0.0]])
    keep = mis_mask(old, torch.zeros(4, 2), mask, cap=2.0, level="sequence")
    assert keep.tolist() == [[1, 1], [1, 1], [0, 0], [1, 0]]
    # token level would have kept the ratio-1 token of row 3 and dropped the ratio-4 token of row 2
    assert mis_mask(old, torch.zeros(4, 2), mask, cap=2.0).tolist() == [[1, 1], [0, 1], [0, 1], [1, 0]]


def test_tis_weighted_policy_loss_hand_computed():
    # trainer logp == old logp (PPO ratio 1, no clipping): per token -A * w; w = (0.5, 1, 1.5, 2)
    # loss = -(0.5*1 + 1*2 + 1.5*3 + 2*4) / 4 = -15/4
    logp = OLD.clone().requires_grad_(True)
    w, mask, info = correction("tis", OLD, ROLL, ONES, cap=2.0)
    loss, _ = policy_loss(logp, OLD, ADV, mask, clip=0.2, weights=w)
    assert loss.item() == pytest.approx(-3.75)
    loss.backward()
    assert logp.grad.tolist()[0] == pytest.approx([-0.5 / 4, -2 / 4, -4.5 / 4, -8 / 4])  # d/dlogp = -A w rho / N
    assert info["is_truncated_frac"].item() == pytest.approx(0.25)
    assert info["is_ratio_mean"].item() == pytest.approx(1.5)
    assert info["is_ratio_max"].item() == pytest.approx(3.0)
    assert info["logp_diff_max"].item() == pytest.approx(math.log(3.0))  # |log 0.5| < log 3
    expected_kl = sum(r - 1 - math.log(r) for r in RHO) / 4
    assert info["rollout_kl"].item() == pytest.approx(expected_kl, abs=1e-6)


def test_mis_rejected_tokens_leave_the_denominator():
    # keep tokens 1, 2 (rho 1, 1.5 in [0.6, 2]); loss = -(1*2 + 1.5*3) / 2 = -3.25 (zero-weighting them instead
    # would give -6.5 / 4 = -1.625: the rejected tokens must not count in the mean)
    w, mask, info = correction("mis", OLD, ROLL, ONES, cap=2.0, low=0.6)
    loss, _ = policy_loss(OLD, OLD, ADV, mask, clip=0.2, weights=w)
    assert loss.item() == pytest.approx(-3.25)
    assert mask.tolist() == [[0.0, 1.0, 1.0, 0.0]] and info["is_rejected_frac"].item() == pytest.approx(0.5)


def test_none_is_the_plain_loss_and_weights_one_is_identity():
    w, mask, _ = correction("none", OLD, ROLL, ONES)
    plain, _ = policy_loss(OLD, OLD, ADV, ONES)
    weighted, _ = policy_loss(OLD, OLD, ADV, mask, weights=w)
    assert plain.item() == pytest.approx(-2.5) and weighted.item() == plain.item()


def test_bad_settings_raise():
    with pytest.raises(ValueError, match="mode"):
        correction("xis", OLD, ROLL, ONES)
    with pytest.raises(ValueError, match="cap"):
        tis_weights(OLD, ROLL, ONES, cap=0.0)
    with pytest.raises(ValueError, match="level"):
        mis_mask(OLD, ROLL, ONES, cap=2.0, level="batch")
