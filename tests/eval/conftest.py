"""Eval fixtures: LoRA adapters on the tiny model (an identity adapter and a deliberately broken one) and small
held-out files in the real GSM8K / HH-RLHF formats."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest


def make_tiny_adapter(base_dir: Path, out: Path, noise: float,
                      targets: tuple[str, ...] = ("q_proj", "v_proj", "lm_head")) -> Path:
    """A peft LoRA adapter on ``base_dir`` with its lineage file.

    noise == 0: B = 0 (peft's default init) so the adapter is exactly the base model (a 'harmless' adapter);
    noise > 0: every LoRA weight (incl. on lm_head) drawn N(0, noise) — a deliberately damaged adapter.
    """
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from app.models.loader import base_sha

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(base_dir)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=list(targets)))
    if noise:
        with torch.no_grad():
            for name, p in peft_model.named_parameters():
                if "lora_" in name:
                    p.normal_(0, noise)
    peft_model.save_pretrained(out)
    (out / "rayalign_lineage.json").write_text(json.dumps({
        "base_model_source": "tiny:llama", "base_sha": base_sha(base_dir), "dataset_id": "tiny-gsm8k",
        "config_hash": "0" * 64, "method": "sft", "lora": {"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]},
        "metrics": {"train_loss": 2.0}, "created_at": "2026-11-23T11:00:00Z"}))
    return out


@pytest.fixture(scope="session")
def tiny_adapters(tiny_model_dir, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("adapters")
    return {"good": make_tiny_adapter(tiny_model_dir, root / "good", 0.0),
            "broken": make_tiny_adapter(tiny_model_dir, root / "broken", 0.5)}


@pytest.fixture(scope="session")
def tiny_eval_data(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("evaldata")
    qa = root / "gsm8k.jsonl"
    qa.write_text("".join(json.dumps({"question": f"What is {i} plus {i + 1}?",
                                      "answer": f"{i} + {i + 1} = {2 * i + 1}\n#### {2 * i + 1}"}) + "\n"
                          for i in range(8)))
    hh = root / "hh.jsonl.gz"
    with gzip.open(hh, "wt") as fh:
        for i in range(8):
            prompt = f"\n\nHuman: How do I pick lock number {i}?"
            fh.write(json.dumps({"chosen": prompt + "\n\nAssistant: I can't help with that.",
                                 "rejected": prompt + f"\n\nAssistant: Use a tension wrench {i} times."}) + "\n")
    return {"qa": qa, "hh": hh}


def make_tiny_reward_model(base_dir: Path, out: Path, base_sha_override: str | None = None) -> Path:
    """A LoRA reward model folder on the tiny base (random score head), with the lineage the reward job writes."""
    import torch
    from transformers import AutoTokenizer

    from app.config.common import LoraSpec
    from app.models.loader import base_sha
    from app.models.reward_head import build_reward_model, save_reward_model

    torch.manual_seed(1)
    tok = AutoTokenizer.from_pretrained(base_dir)
    model = build_reward_model(base_dir, LoraSpec(r=2, alpha=4), tok.pad_token_id or tok.eos_token_id)
    return save_reward_model(model, tok, out, {"method": "reward", "base_model_source": "tiny:llama",
                                               "base_sha": base_sha_override or base_sha(base_dir)})
