"""PPO test fixtures: a small GSM8K-style prompt file and a tiny-model PPO config pointing at it."""

from __future__ import annotations

import json

import pytest

from app.config.loader import load_config
from app.config.paths import REPO_ROOT


@pytest.fixture(scope="session")
def prompt_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("prompts") / "math.jsonl"
    rows = [{"question": f"Tom has {a} apples and buys {b} more. How many apples does he have?",
             "answer": f"{a} + {b} = {a + b}\n#### {a + b}"} for a in range(1, 9) for b in (2, 5)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def tiny_cfg(prompt_file, tmp_path, tiny_model_dir):
    """Load a configs/tiny/ppo_*.yaml twin with the test prompts and a per-test run folder."""
    from app.config.ppo import PPOConfig

    def load(name: str, *overrides: str):
        return load_config(REPO_ROOT / "configs" / "tiny" / name, PPOConfig,
                           [f"prompts.path={prompt_file}", f"run.output_dir={tmp_path / 'run'}", *overrides])

    return load


def write_tiny_reward_model(out, tiny_model_dir):
    """A reward model folder for the tiny base (LoRA + score head, written by app.models.reward_head), untrained but
    with a random head so scores differ between responses."""
    import torch

    from app.config.sft import LoraSpec
    from app.models.loader import load_tokenizer, resolve_model
    from app.models.reward_head import build_reward_model, save_reward_model

    torch.manual_seed(0)
    tok = load_tokenizer(str(tiny_model_dir))
    model = build_reward_model(tiny_model_dir, LoraSpec(r=4, alpha=8), tok.pad_token_id)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "score" in name:
                p.normal_(0, 1.0)
    lineage = {"method": "reward", "base_model_source": "tiny:llama", "base_sha": resolve_model("tiny:llama").base_sha,
               "dataset_id": "preference-tinyrm", "config_hash": "rm0", "lora": {"r": 4}, "metrics": {}}
    return save_reward_model(model, tok, out, lineage)


@pytest.fixture(scope="session")
def tiny_reward_model(tmp_path_factory, tiny_model_dir):
    return write_tiny_reward_model(tmp_path_factory.mktemp("rm") / "reward-model", tiny_model_dir)


@pytest.fixture(scope="session")
def tiny_sft_adapter(tmp_path_factory, tiny_model_dir):
    """An 'SFT' LoRA adapter folder for the tiny base whose weights really change the model (lora_B non-zero)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from app.models.adapter import write_lineage
    from app.models.loader import resolve_model

    torch.manual_seed(1)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                           LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    out = tmp_path_factory.mktemp("sft") / "sft-adapter"
    model.save_pretrained(out)
    write_lineage(out, base_model_source="tiny:llama", base_sha=resolve_model("tiny:llama").base_sha,
                  dataset_id="sft-tinysft", config_hash="sft0", method="lora",
                  lora={"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]}, metrics={})
    return out
