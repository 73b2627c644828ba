"""Train-area fixtures: a tiny packed SFT artifact written straight to the data contract's Parquet columns.

``packed_artifact_double`` is a named test double for the `data` area's artifact writer (same folder layout and
columns: input_ids, labels with -100 on prompt tokens, position_ids restarting per packed example, seq_len).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from app.data.synthetic import write_packed_artifact as write_packed_artifact_double


@pytest.fixture(scope="session")
def packed_artifact_double(tmp_path_factory) -> Path:
    return write_packed_artifact_double(tmp_path_factory.mktemp("sft_artifact"))


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fixed_steps(strat, rank: int, steps: int = 3) -> list[list[float]]:
    """[loss, grad norm] of ``steps`` optimizer steps of ``strat`` on fixed random batches (2 x 24 tokens, seeded by
    step and rank): two builds of the same model must give the same list (tests/train/test_{meta,zero3}_init.py)."""
    import torch

    from app.core.losses import causal_lm_loss

    strat.model.train()
    losses = []
    for step in range(steps):
        g = torch.Generator().manual_seed(100 * step + rank)
        ids = torch.randint(3, 400, (2, 24), generator=g)
        logits = strat.model(input_ids=ids, use_cache=False).logits
        loss_sum, n = causal_lm_loss(logits, ids, torch.arange(24).expand(2, 24))
        strat.backward(loss_sum / n, last=True)
        grad_norm, _ = strat.step()
        losses.append([(loss_sum / n).item(), grad_norm])
    return losses
