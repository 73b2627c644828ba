"""SFTConfig: illegal combinations refused with a sentence; DeepSpeed config generated from the schema; batches."""

from __future__ import annotations

import numpy as np
import pytest

from app.config.errors import ConfigError
from app.config.loader import load_config, validate_config
from app.config.paths import REPO_ROOT
from app.config.sft import SFTConfig, training_hash
from app.train.batches import PackedShard, collate_packed, shard_rows
from app.train.strategy import deepspeed_config, lr_factor


@pytest.mark.parametrize(
    "overrides, words",
    [
        ({"method": "qlora", "strategy": {"kind": "fsdp2"}}, ["qlora", "fsdp2", "use strategy.kind=ddp"]),
        ({"method": "qlora", "strategy": {"kind": "deepspeed", "zero_stage": 3}}, ["ZeRO-3", "zero_stage 2"]),
        ({"fault": {"rank": 3}}, ["fault.rank 3"]),
    ],
)
def test_illegal_combinations_refused_with_a_sentence(overrides, words):
    with pytest.raises(ConfigError) as err:
        validate_config(overrides, SFTConfig, "x.yaml")
    for w in words:
        assert w in str(err.value)


def test_legal_qlora_zero2_and_lora_zero3():
    validate_config({"method": "qlora", "strategy": {"kind": "deepspeed", "zero_stage": 2}}, SFTConfig)
    validate_config({"method": "lora", "strategy": {"kind": "deepspeed", "zero_stage": 3}}, SFTConfig)


def test_deepspeed_config_from_schema():
    cfg = load_config(REPO_ROOT / "configs/sft/llama31_70b_lora_zero3.yaml", SFTConfig)
    ds = deepspeed_config(cfg)
    assert ds["zero_optimization"]["stage"] == 3
    assert ds["train_batch_size"] == 1 * 8 * 32
    assert ds["gradient_accumulation_steps"] == 8 and ds["bf16"]["enabled"] is True
    assert ds["gradient_clipping"] == cfg.optim.max_grad_norm


def test_training_hash_ignores_fault_injection_only():
    base = SFTConfig()
    assert training_hash(base) == training_hash(SFTConfig(fault={"kill_at_step": 3}))
    assert training_hash(base) != training_hash(SFTConfig(optim={"lr": 1e-3}))


def test_lr_schedule_by_hand():
    assert lr_factor(0, 2, 10, "cosine") == 0.5 and lr_factor(1, 2, 10, "cosine") == 1.0
    assert lr_factor(2, 2, 10, "cosine") == pytest.approx(1.0)
    assert lr_factor(6, 2, 10, "cosine") == pytest.approx(0.5)
    assert lr_factor(6, 2, 10, "linear") == pytest.approx(0.5)
    assert lr_factor(10, 2, 10, "linear") == pytest.approx(0.0)


def test_rank_shards_are_disjoint_and_epoch_order_is_deterministic():
    rows = [{"input_ids": [i, i], "labels": [-100, i], "position_ids": [0, 1]} for i in range(10)]
    r0, n = shard_rows(rows, 0, 2)
    r1, _ = shard_rows(rows, 1, 2)
    assert n == 10 and {int(r["input_ids"][0]) for r in r0}.isdisjoint({int(r["input_ids"][0]) for r in r1})
    shard = PackedShard(r0, n, 2, micro_batch_size=2, grad_accum=1, seed=7)
    assert shard.steps_per_epoch == 2
    assert shard.step_rows(1, 1)[0][0] is PackedShard(r0, n, 2, 2, 1, 7).step_rows(1, 1)[0][0]
    assert shard.order(0) != shard.order(1) or len(r0) < 3


def test_collate_pads_with_ignored_labels_and_fresh_positions():
    rows = [{"input_ids": np.array([5, 6, 7]), "labels": np.array([-100, 6, 7]), "position_ids": np.array([0, 1, 0])},
            {"input_ids": np.array([8]), "labels": np.array([8]), "position_ids": np.array([0])}]
    b = collate_packed(rows, pad_id=0)
    assert b["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert b["labels"].tolist() == [[-100, 6, 7], [8, -100, -100]]
    assert b["position_ids"].tolist() == [[0, 1, 0], [0, 0, 1]]
    assert int(b["n_real_tokens"]) == 4
    assert collate_packed(rows, pad_id=0, objective="cpt")["labels"].tolist()[0] == [5, 6, 7]
