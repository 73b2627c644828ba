"""Capacity planner: parameter counts by peft on meta-device models, GPU choice, and the CLI."""

from __future__ import annotations

import json

import pytest

from app.config.paths import REPO_ROOT
from app.config.plan import PlanConfig

LLAMA2_7B = {
    "model_type": "llama", "hidden_size": 4096, "num_hidden_layers": 32, "intermediate_size": 11008,
    "num_attention_heads": 32, "num_key_value_heads": 32, "vocab_size": 32000,
}


@pytest.fixture(scope="module")
def llama7b_lora():
    from app.plan.model_stats import count_model_params, read_hf_config

    return count_model_params(read_hf_config(LLAMA2_7B, None), "lora", lora_r=8, target_modules="all-linear")


def test_llama2_7b_lora_r8_all_linear_trainable_params(llama7b_lora):
    """≈ 20.0M, counted by peft on the meta model; cross-checked by hand: r·(in+out) summed over the 7 linears."""
    h, i, r, layers = 4096, 11008, 8, 32
    by_hand = layers * (4 * r * (h + h) + 2 * r * (h + i) + r * (i + h))
    assert llama7b_lora.trainable_params == by_hand == 19_988_480
    assert llama7b_lora.trainable_params / 1e6 == pytest.approx(20.0, abs=0.05)
    assert llama7b_lora.total_params == 6_738_415_616  # Llama-2-7B's published 6.74B
    assert llama7b_lora.largest_layer_params == 32000 * 4096  # an embedding matrix
    assert llama7b_lora.shape.gated_mlp and llama7b_lora.shape.kv_heads == 32


def test_plan_full_finetune_needs_sharding(llama7b_lora):
    from dataclasses import replace

    from app.plan.planner import plan_capacity

    full = replace(llama7b_lora, trainable_params=llama7b_lora.total_params, adapter_params=0)
    cfg = PlanConfig(hf_config=LLAMA2_7B, method="full", seq_len=4096,
                     hardware={"gpu_types": ["A100-80GB"], "max_gpus": 16})
    plan = plan_capacity(cfg, full)
    c = plan.chosen
    # 16 bytes x 6.74B = 108 GB of model states cannot sit on one 80 GB GPU: ZeRO must shard across several
    assert c is not None and c.fits and c.stage >= 2 and c.n_gpus >= 2
    assert c.per_gpu_bytes <= 0.9 * 80 * 2**30
    # forcing plain DDP on the same hardware finds nothing
    ddp = plan_capacity(cfg.model_copy(update={"parallelism": "ddp"}), full)
    assert ddp.chosen is None and not ddp.per_gpu_type[0].fits


def test_qlora_and_checkpointing_shrink_the_plan(llama7b_lora):
    from app.plan.planner import estimate_option
    from app.plan.gpus import gpu

    base = PlanConfig(hf_config=LLAMA2_7B, method="lora", seq_len=4096, micro_batch=4)
    lora = estimate_option(base, llama7b_lora, gpu("L4"), 1, "ddp")
    qlora = estimate_option(base.model_copy(update={"method": "qlora"}), llama7b_lora, gpu("L4"), 1, "ddp")
    no_ckpt = estimate_option(base.model_copy(update={"grad_checkpointing": False}), llama7b_lora, gpu("L4"), 1, "ddp")
    assert qlora.states.weights < 0.4 * lora.states.weights
    assert no_ckpt.activations > 3 * lora.activations
    assert not lora.fits and qlora.fits  # 7B bf16 LoRA does not fit one 24 GB L4 at this batch; QLoRA does


def test_plan_cli_on_the_tiny_model(tmp_path, capsys):
    from app.cli import main

    out = tmp_path / "blocks.yaml"
    rc = main(["plan", "--config", str(REPO_ROOT / "configs/tiny/plan_lora.yaml"), "--json", "--out", str(out)])
    doc = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert doc["chosen"]["gpu"] == "L4" and doc["chosen"]["n_gpus"] == 1
    assert 0 < doc["model"]["trainable_params"] < doc["model"]["total_params"]
    assert doc["skypilot"]["resources"]["accelerators"] == "L4:1"
    assert out.is_file()


def test_plan_cli_reports_when_nothing_fits(capsys):
    from app.cli import main

    rc = main(["plan", "--config", str(REPO_ROOT / "configs/plan/llama2-7b_full.yaml"), "hardware.gpu_types=[L4]", "hardware.max_gpus=1"])
    assert rc == 1
    assert "nothing fits" in capsys.readouterr().out


def test_plan_rejects_config_without_model_type():
    from app.config.errors import ConfigError
    from app.plan.model_stats import read_hf_config

    with pytest.raises(ConfigError, match="model_type"):
        read_hf_config({"hidden_size": 64}, None)


def test_unknown_gpu_type_is_a_one_line_config_error():
    from app.config.errors import ConfigError
    from app.config.loader import load_config

    with pytest.raises(ConfigError, match=r"hardware.gpu_types.*unknown GPU type.*B300"):
        load_config(str(REPO_ROOT / "configs/tiny/plan_lora.yaml"), PlanConfig, ["hardware.gpu_types=[L4, B300]"])
