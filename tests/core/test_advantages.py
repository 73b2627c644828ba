"""Golden tests for app.core.advantages: values computed by hand or by a naive reference loop."""

import math

import pytest
import torch

from app.core.advantages import (
    AdaptiveKLController, compute_gae, group_advantages, kl_estimate, masked_mean, shape_rewards, whiten,
)


def test_gae_hand_computed():
    # gamma=0.9, lam=0.8: deltas 0.04, 0.03, 0.3 ; A2=0.3, A1=0.03+0.72*0.3, A0=0.04+0.72*A1
    rewards = torch.tensor([[0.0, 0.0, 1.0]])
    values = torch.tensor([[0.5, 0.6, 0.7]])
    adv, ret = compute_gae(rewards, values, torch.ones(1, 3), gamma=0.9, lam=0.8)
    assert torch.allclose(adv, torch.tensor([[0.21712, 0.246, 0.3]]), atol=1e-6)
    assert torch.allclose(ret, torch.tensor([[0.71712, 0.846, 1.0]]), atol=1e-6)


def test_gae_right_padding_does_not_leak():
    rewards = torch.tensor([[0.0, 0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 9.0, 9.0]])
    values = torch.tensor([[0.5, 0.6, 0.7, 0.0, 0.0], [0.5, 0.6, 0.7, 5.0, -3.0]])
    mask = torch.tensor([[1.0, 1, 1, 0, 0], [1.0, 1, 1, 0, 0]])
    adv, ret = compute_gae(rewards, values, mask, gamma=0.9, lam=0.8)
    assert torch.allclose(adv[0], adv[1]) and torch.allclose(ret[0], ret[1])
    assert torch.all(adv[:, 3:] == 0) and torch.all(ret[:, 3:] == 0)


def test_gae_lambda1_gamma1_is_reward_to_go_minus_value():
    torch.manual_seed(0)
    rewards, values = torch.randn(4, 7), torch.randn(4, 7)
    mask = torch.ones(4, 7)
    mask[1, 5:] = 0
    mask[3, 2:] = 0
    adv, ret = compute_gae(rewards, values, mask, gamma=1.0, lam=1.0)
    for b in range(4):  # naive reference: sum of future rewards within the response, minus V
        n = int(mask[b].sum())
        for t in range(n):
            rtg = float(rewards[b, t:n].sum())
            assert adv[b, t].item() == pytest.approx(rtg - values[b, t].item(), abs=1e-5)
            assert ret[b, t].item() == pytest.approx(rtg, abs=1e-5)


def test_gae_matches_naive_discounted_sum_of_deltas():
    torch.manual_seed(1)
    r, v = torch.randn(2, 6), torch.randn(2, 6)
    gamma, lam = 0.97, 0.9
    adv, _ = compute_gae(r, v, torch.ones(2, 6), gamma, lam)
    v_next = torch.cat([v[:, 1:], torch.zeros(2, 1)], 1)
    delta = r + gamma * v_next - v
    for t in range(6):
        ref = sum((gamma * lam) ** (k - t) * delta[:, k] for k in range(t, 6))
        assert torch.allclose(adv[:, t], ref, atol=1e-5)


def test_whiten_hand_computed_and_ignores_padding():
    x = torch.tensor([[1.0, 2.0, 3.0, 4.0, 100.0]])
    mask = torch.tensor([[1.0, 1, 1, 1, 0]])
    out = whiten(x, mask)
    std = math.sqrt(5 / 3)  # unbiased variance of 1..4 is 5/3
    expected = torch.tensor([[-1.5 / std, -0.5 / std, 0.5 / std, 1.5 / std, 0.0]])
    assert torch.allclose(out, expected, atol=1e-5)
    assert masked_mean(out, mask).abs() < 1e-6


def test_kl_estimators_hand_computed():
    logp, ref = torch.tensor([math.log(0.5)]), torch.tensor([math.log(0.25)])
    assert kl_estimate(logp, ref, "k1").item() == pytest.approx(math.log(2), abs=1e-6)
    assert kl_estimate(logp, ref, "k2").item() == pytest.approx(0.5 * math.log(2) ** 2, abs=1e-6)
    assert kl_estimate(logp, ref, "k3").item() == pytest.approx(-0.5 + math.log(2), abs=1e-6)
    with pytest.raises(ValueError):
        kl_estimate(logp, ref, "k9")


def test_k1_k3_are_unbiased_for_exact_kl():
    p = torch.tensor([0.5, 0.3, 0.15, 0.05])
    q = torch.tensor([0.25, 0.25, 0.25, 0.25])
    exact = float((p * (p / q).log()).sum())
    torch.manual_seed(0)
    x = torch.multinomial(p, 200_000, replacement=True)
    logp, logq = p.log()[x], q.log()[x]
    assert kl_estimate(logp, logq, "k1").mean().item() == pytest.approx(exact, rel=0.03)
    assert kl_estimate(logp, logq, "k3").mean().item() == pytest.approx(exact, rel=0.03)
    assert kl_estimate(logp, logq, "k3").min() >= 0  # k3 is never negative, k1 can be
    assert kl_estimate(logp, logq, "k1").min() < 0


def test_shape_rewards_puts_score_on_last_real_token():
    scores = torch.tensor([2.0, -1.0])
    kl = torch.tensor([[0.1, 0.2, 0.3, 0.0], [0.4, 0.0, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1, 1, 0], [1.0, 0, 0, 0]])
    out = shape_rewards(scores, kl, mask, kl_coef=0.5)
    assert torch.allclose(out, torch.tensor([[-0.05, -0.1, 1.85, 0.0], [-1.2, 0.0, 0.0, 0.0]]))


def test_group_advantages_grpo_and_rloo():
    scores = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0])
    grpo = group_advantages(scores, 4, "grpo")
    s = math.sqrt(1 / 3)  # unbiased std of {1,0,0,1}
    assert torch.allclose(grpo[:4], torch.tensor([0.5, -0.5, -0.5, 0.5]) / s, atol=1e-4)
    rloo = group_advantages(scores, 4, "rloo")
    naive = torch.tensor([
        scores[i] - (scores[(i // 4) * 4:(i // 4) * 4 + 4].sum() - scores[i]) / 3 for i in range(8)
    ])
    assert torch.allclose(rloo, naive, atol=1e-6)
    with pytest.raises(ValueError):
        group_advantages(scores, 3)


def test_adaptive_kl_controller_hand_computed_and_roundtrip():
    ctl = AdaptiveKLController(0.1, target=6.0, horizon=100)
    assert ctl.update(9.0, n_steps=10) == pytest.approx(0.1 * 1.02)  # error clipped to +0.2
    assert ctl.update(5.4, n_steps=10) == pytest.approx(0.1 * 1.02 * 0.99)  # error -0.1
    again = AdaptiveKLController.from_state_dict(ctl.state_dict())
    assert again == ctl
    fixed = AdaptiveKLController(0.1, target=None)
    assert fixed.update(100.0, 10) == 0.1
