"""Methods without Ray: LoRA (all-linear) / QLoRA (NF4 + double quant) / full build and take an optimizer step."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from app.config.sft import SFTConfig
from app.core.losses import causal_lm_loss
from app.models.lora import load_trainable_model, trainable_names
from app.train.batches import collate_packed
from app.train.strategy import make_strategy


def one_step(cfg: SFTConfig, model) -> tuple[float, float]:
    rows = [{"input_ids": np.arange(3, 35), "labels": np.r_[[-100] * 8, np.arange(11, 35)], "position_ids": np.arange(32)}]
    batch = collate_packed(rows, pad_id=0, objective=cfg.train.objective)
    strat = make_strategy(model, cfg, total_steps=5)
    losses = []
    for _ in range(2):
        logits = strat.model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits
        loss_sum, n = causal_lm_loss(logits, batch["labels"], batch["position_ids"])
        strat.backward(loss_sum / n, last=True)
        strat.step()
        losses.append(float(loss_sum.detach() / n))
    return losses[0], losses[1]


@pytest.mark.parametrize("method, objective", [("lora", "sft"), ("qlora", "sft"), ("full", "cpt")])
def test_method_builds_and_learns_one_step(tiny_model_dir, method, objective):
    cfg = SFTConfig.model_validate({
        "method": method, "lora": {"r": 4, "alpha": 8, "target_modules": "all-linear", "dropout": 0.0},
        "quant": {"compute_dtype": "float32"}, "optim": {"lr": 5e-3, "schedule": "constant"}, "train": {"objective": objective},
    })
    model = load_trainable_model(tiny_model_dir, method, cfg.lora, cfg.quant, seed=0)
    names = trainable_names(model)
    if method == "full":
        assert len(names) == len(list(model.parameters()))
    else:
        assert names and all("lora_" in n for n in names)
        adapted = {n.split(".lora_")[0].rsplit(".", 1)[-1] for n in names}
        assert {"q_proj", "v_proj", "gate_proj", "down_proj"} <= adapted  # all-linear reaches the MLP too
    if method == "qlora":
        import bitsandbytes as bnb

        quantized = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
        assert quantized and quantized[0].weight.quant_state.nested  # double quant
    before, after = one_step(cfg, model)
    assert after < before
