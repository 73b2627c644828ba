"""Golden tests for multi-turn loss masks: model-generated tokens carry loss, tool/environment tokens never do."""

import pytest
import torch

from app.core.multiturn import assemble_episode, model_token_count
from app.core.ppo_losses import policy_loss

EPISODE = [("model", [5, 6], [-0.1, -0.2]), ("tool", [7, 8, 9], None), ("model", [10], [-0.3])]


def test_assemble_by_hand():
    ids, mask, logp = assemble_episode(EPISODE)
    assert ids == [5, 6, 7, 8, 9, 10]
    assert mask == [1.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    assert logp == pytest.approx([-0.1, -0.2, 0.0, 0.0, 0.0, -0.3])
    assert model_token_count(EPISODE) == 3


def test_tool_tokens_get_no_loss_and_no_gradient():
    _, mask, _ = assemble_episode(EPISODE)
    mask = torch.tensor([mask])
    # ratio 1 everywhere; advantages 1 on model tokens and 1000 on tool tokens: a leak would move the loss
    adv = torch.tensor([[1.0, 1.0, 1000.0, 1000.0, 1000.0, 1.0]])
    logp = torch.zeros(1, 6, requires_grad=True)
    loss, _ = policy_loss(logp, torch.zeros(1, 6), adv, mask)
    assert loss.item() == pytest.approx(-1.0)  # mean over the 3 model tokens only
    loss.backward()
    assert logp.grad.tolist()[0] == pytest.approx([-1 / 3, -1 / 3, 0.0, 0.0, 0.0, -1 / 3])


def test_mismatched_logprobs_raise():
    with pytest.raises(ValueError, match="segment 0: 2 tokens but 1 log-probs"):
        assemble_episode([("model", [1, 2], [-0.5])])
