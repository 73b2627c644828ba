"""Golden tests for the PPO clipped losses against hand-computed values."""

import math

import pytest
import torch

from app.core.logprobs import gather_logprobs, shifted_token_logprobs
from app.core.ppo_losses import entropy_from_logits, policy_loss, value_loss

RATIOS = [1.5, 0.5, 1.1, 0.9, 0.5]
ADV = [1.0, 1.0, -1.0, -1.0, -1.0]


def test_policy_loss_hand_computed():
    # per token max(-A r, -A clip(r)): -1.2 (clipped), -0.5, 1.1, 0.9, 0.8 (clipped) -> mean 0.22
    logp = torch.tensor([RATIOS]).log().requires_grad_(True)
    loss, info = policy_loss(logp, torch.zeros(1, 5), torch.tensor([ADV]), torch.ones(1, 5), clip=0.2)
    assert loss.item() == pytest.approx(0.22, abs=1e-6)
    assert info["clip_frac"].item() == pytest.approx(0.4)
    expected_kl = sum((r - 1) - math.log(r) for r in RATIOS) / 5
    assert info["approx_kl"].item() == pytest.approx(expected_kl, abs=1e-6)
    loss.backward()
    grad = logp.grad[0]
    assert grad[0] == 0 and grad[4] == 0  # clipped tokens carry no gradient
    assert grad[1].item() == pytest.approx(-0.5 / 5)  # d(-A r)/dlogp = -A r / N


def test_policy_loss_ignores_masked_tokens():
    logp = torch.tensor([RATIOS + [3.0]]).log()
    mask = torch.tensor([[1.0] * 5 + [0.0]])
    loss, _ = policy_loss(logp, torch.zeros(1, 6), torch.tensor([ADV + [100.0]]), mask, clip=0.2)
    assert loss.item() == pytest.approx(0.22, abs=1e-6)


def test_value_loss_hand_computed():
    # tok0: max((1-2)^2, (0.7-2)^2)=1.69 ; tok1: max(0, (0.3-0)^2)=0.09 ; 0.5*mean = 0.445
    v, old, ret = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.5, 0.5]]), torch.tensor([[2.0, 0.0]])
    loss, info = value_loss(v, old, ret, torch.ones(1, 2), clip=0.2)
    assert loss.item() == pytest.approx(0.445)
    assert info["vf_clip_frac"].item() == 1.0
    plain, _ = value_loss(v, old, ret, torch.ones(1, 2), clip=None)
    assert plain.item() == pytest.approx(0.25)


def test_entropy_uniform_and_peaked():
    assert entropy_from_logits(torch.zeros(3, 4)).tolist() == pytest.approx([math.log(4)] * 3)
    assert entropy_from_logits(torch.tensor([[100.0, 0, 0]])).item() == pytest.approx(0.0, abs=1e-6)


def test_logprobs_match_log_softmax():
    torch.manual_seed(0)
    logits, ids = torch.randn(2, 5, 11), torch.randint(0, 11, (2, 5))
    ref = torch.log_softmax(logits, -1).gather(-1, ids[..., None])[..., 0]
    assert torch.allclose(gather_logprobs(logits, ids), ref, atol=1e-5)
    shifted = shifted_token_logprobs(logits, ids)  # entry t scores token t+1 with the logits at t
    naive = torch.tensor([[torch.log_softmax(logits[b, t], -1)[ids[b, t + 1]].item() for t in range(4)] for b in range(2)])
    assert torch.allclose(shifted, naive, atol=1e-5)
