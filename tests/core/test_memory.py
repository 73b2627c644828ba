"""Golden tests for app.core.memory against published figures and DeepSpeed's own estimators."""

from __future__ import annotations

import contextlib
import io
import re

import pytest

from app.core.memory import (
    DEEPSPEED,
    NF4_BYTES_PER_PARAM,
    ZERO_PAPER,
    TransformerShape,
    activation_bytes,
    layer_activation_bytes,
    model_state_bytes,
)

GB = 1e9
GIB = 2**30


@pytest.mark.parametrize(
    "stage, expected_gb",
    [(0, 120.0), (1, 31.4), (2, 16.6), (3, 1.88)],
    ids=["baseline", "P_os", "P_os+g", "P_os+g+p"],
)
def test_zero_paper_table1(stage, expected_gb):
    """ZeRO paper Table 1: Ψ = 7.5B, N_d = 64, K = 12 (the paper rounds to 3 significant digits)."""
    got = model_state_bytes(7.5e9, stage=stage, n_gpus=64, accounting=ZERO_PAPER).total / GB
    assert got == pytest.approx(expected_gb, rel=0.005)


def _deepspeed_cold_table(fn, **kwargs) -> list[float]:
    """Run a DeepSpeed ``*_all_cold`` estimator and read its printed per-GPU column (GiB, offload rows first)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        fn(**kwargs)
    return [float(m.group(1)) for m in re.finditer(r"\|\s*([\d.]+)GB \|", out.getvalue())]


@pytest.fixture(scope="module")
def ds_estimators():
    s12 = pytest.importorskip("deepspeed.runtime.zero.stage_1_and_2")
    s3 = pytest.importorskip("deepspeed.runtime.zero.stage3")
    return s12, s3


@pytest.mark.parametrize("params, gpus_per_node, nodes", [(7.5e9, 8, 8), (6.74e9, 8, 1), (1.3e9, 4, 1), (70e9, 8, 4)])
def test_zero2_matches_deepspeed_estimator(ds_estimators, params, gpus_per_node, nodes):
    s12, _ = ds_estimators
    offload_gib, plain_gib = _deepspeed_cold_table(
        s12.estimate_zero2_model_states_mem_needs_all_cold,
        total_params=int(params), num_gpus_per_node=gpus_per_node, num_nodes=nodes,
    )
    n = gpus_per_node * nodes
    ours_plain = model_state_bytes(params, stage=2, n_gpus=n).total / GIB
    ours_offload = model_state_bytes(params, stage=2, n_gpus=n, offload="optimizer").total / GIB
    assert ours_plain == pytest.approx(plain_gib, rel=0.05)
    assert ours_offload == pytest.approx(offload_gib, rel=0.05)


@pytest.mark.parametrize(
    "params, largest, gpus_per_node, nodes",
    [(7.5e9, 0.2e9, 8, 8), (6.74e9, 32000 * 4096, 8, 1), (70e9, 32000 * 8192, 8, 4), (1.3e9, 50272 * 2048, 2, 1)],
)
def test_zero3_matches_deepspeed_estimator(ds_estimators, params, largest, gpus_per_node, nodes):
    _, s3 = ds_estimators
    rows = _deepspeed_cold_table(
        s3.estimate_zero3_model_states_mem_needs_all_cold,
        total_params=int(params), largest_layer_params=int(largest), num_gpus_per_node=gpus_per_node, num_nodes=nodes,
    )
    # rows: offload params+optimizer (zero_init 1, 0), offload optimizer (1, 0), no offload (1, 0)
    n = gpus_per_node * nodes
    expected = {"optimizer+params": rows[0], "optimizer": rows[2], "none": rows[4]}
    for offload, ds_gib in expected.items():
        ours = model_state_bytes(params, stage=3, n_gpus=n, offload=offload, largest_layer_params=largest).total / GIB
        assert ours == pytest.approx(ds_gib, rel=0.05), offload


def test_lora_frozen_base_is_sharded_only_by_stage3():
    frozen, trainable = 7e9, 20e6
    ddp = model_state_bytes(trainable, frozen, stage=0, n_gpus=8)
    z2 = model_state_bytes(trainable, frozen, stage=2, n_gpus=8)
    z3 = model_state_bytes(trainable, frozen, stage=3, n_gpus=8)
    assert ddp.weights == z2.weights == pytest.approx(2 * frozen + 2 * trainable)
    assert z3.weights == pytest.approx((2 * frozen + 2 * trainable) / 8)
    # the optimizer state of a LoRA run is tiny next to the frozen weights
    assert ddp.optimizer < 0.03 * ddp.weights


def test_qlora_nf4_bytes_per_param():
    """4-bit codes + 8-bit absmax per 64 + fp32 per 256 blocks = 4.127 bits (QLoRA paper §3: 0.127 bits overhead)."""
    assert NF4_BYTES_PER_PARAM * 8 == pytest.approx(4.127, abs=1e-3)


def test_offload_moves_states_to_cpu_without_losing_them():
    plain = model_state_bytes(1e9, stage=3, n_gpus=4, accounting=ZERO_PAPER)
    off = model_state_bytes(1e9, stage=3, n_gpus=4, offload="optimizer+params", accounting=ZERO_PAPER)
    assert off.total == 0.0
    assert off.cpu == pytest.approx(plain.total)
    with pytest.raises(ValueError, match="stage 3"):
        model_state_bytes(1e9, stage=2, offload="optimizer+params")


def test_gpt_layer_matches_korthikanti_eq1():
    """Korthikanti et al. 2022 eq. 1: a GPT layer keeps s·b·h·(34 + 5·a·s/h) bytes (no recomputation, no TP)."""
    s, b, h, a = 2048, 4, 6144, 48
    gpt = TransformerShape(hidden=h, layers=1, heads=a, intermediate=4 * h, vocab=51200, gated_mlp=False, dropout=True)
    expected = s * b * h * (34 + 5 * a * s / h)
    assert layer_activation_bytes(gpt, s, b, flash_attention=False) == pytest.approx(expected, rel=1e-12)


def test_checkpointing_and_flash_attention_cut_activations():
    llama = TransformerShape(hidden=4096, layers=32, heads=32, intermediate=11008, vocab=32000)
    full = activation_bytes(llama, 4096, 1, flash_attention=False)
    flash = activation_bytes(llama, 4096, 1)
    ckpt = activation_bytes(llama, 4096, 1, grad_checkpointing=True)
    assert ckpt < flash < full
    # checkpointing keeps 2 bytes·s·h per layer (+ one live layer + logits): over 10x less here
    assert flash / ckpt > 4
    # activations grow linearly in micro-batch
    assert activation_bytes(llama, 4096, 2) == pytest.approx(2 * flash)
