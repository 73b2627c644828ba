"""Parameter counts of any Hugging Face causal LM, built on the meta device (no weights, no download).

The trainable count of a LoRA/QLoRA run is what peft itself reports after wrapping the meta model, so it follows
peft's own rules (``all-linear`` skips the LM head, fused projections count once, ...).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.config.errors import ConfigError
from app.core.memory import TransformerShape


@dataclass(frozen=True)
class ModelStats:
    """What the memory model needs to know about a model."""

    model_type: str
    total_params: int  # base model parameters (without adapters)
    trainable_params: int  # all of them for full fine-tuning, the adapter's for LoRA/QLoRA
    adapter_params: int  # LoRA parameters added by peft (0 for full fine-tuning)
    quantizable_params: int  # params in nn.Linear layers other than the LM head (what bitsandbytes turns into NF4)
    largest_layer_params: int  # largest parameter count held directly by one module (ZeRO-3 gathers it whole)
    shape: TransformerShape


def read_hf_config(hf_config: dict[str, Any] | None, model_dir: Path | None):
    """A transformers PretrainedConfig from an inline dict (needs ``model_type``) or a folder's config.json."""
    from transformers import AutoConfig

    if hf_config is not None:
        data = dict(hf_config)
        model_type = data.pop("model_type", None)
        if not model_type:
            raise ConfigError("hf_config: needs a 'model_type' (e.g. llama, qwen2, mistral)")
        try:
            return AutoConfig.for_model(model_type, **data)
        except ValueError as exc:
            raise ConfigError(f"hf_config: {exc}") from None
    if model_dir is None or not (Path(model_dir) / "config.json").is_file():
        raise ConfigError(f"no config.json in {model_dir}: give a model folder or an inline hf_config")
    json.loads((Path(model_dir) / "config.json").read_text())  # a clear JSON error before transformers' own
    return AutoConfig.from_pretrained(model_dir)


_GATE_NAMES = ("gate_proj", "gate_up_proj", "w3", "c_fc2", "wi_0")


def _shape(cfg, gated_mlp: bool) -> TransformerShape:
    text = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
    return TransformerShape(
        hidden=int(text.hidden_size),
        layers=int(text.num_hidden_layers),
        heads=int(text.num_attention_heads),
        kv_heads=int(getattr(text, "num_key_value_heads", None) or text.num_attention_heads),
        intermediate=int(getattr(text, "intermediate_size", None) or 4 * text.hidden_size),
        vocab=int(text.vocab_size),
        gated_mlp=gated_mlp,
    )


def count_model_params(cfg, method: str = "lora", lora_r: int = 8, lora_alpha: int = 16,
                       target_modules: str | list[str] = "all-linear") -> ModelStats:
    """Build ``cfg`` on the meta device and count its parameters; for lora/qlora wrap it with peft and ask peft."""
    import torch
    from torch import nn
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(cfg)
    total = sum(p.numel() for p in model.parameters())
    head = model.get_output_embeddings()
    quantizable = sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear) and m is not head)
    gated = any(name.rsplit(".", 1)[-1] in _GATE_NAMES for name, _ in model.named_modules())
    largest = max(sum(p.numel() for p in m.parameters(recurse=False)) for m in model.modules())
    adapter = 0
    trainable = total
    if method in ("lora", "qlora"):
        from peft import LoraConfig, get_peft_model

        peft_model = get_peft_model(model, LoraConfig(r=lora_r, lora_alpha=lora_alpha, target_modules=target_modules))
        trainable, _ = peft_model.get_nb_trainable_parameters()
        adapter = trainable
    return ModelStats(
        model_type=cfg.model_type,
        total_params=total,
        trainable_params=trainable,
        adapter_params=adapter,
        quantizable_params=quantizable,
        largest_layer_params=largest,
        shape=_shape(cfg, gated),
    )
