"""Build the trainable model for a method: full weights, LoRA (peft), or QLoRA (bitsandbytes NF4 base + LoRA)."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from app.config.common import LoraSpec, QuantSpec


def lora_config(spec: LoraSpec, task_type: str | None = "CAUSAL_LM"):
    """A peft LoraConfig from our schema ('all-linear' is peft's own shorthand); ``task_type`` CAUSAL_LM, SEQ_CLS or None (a bare backbone)."""
    from peft import LoraConfig

    return LoraConfig(
        r=spec.r,
        lora_alpha=spec.alpha,
        lora_dropout=spec.dropout,
        target_modules=spec.target_modules if isinstance(spec.target_modules, str) else list(spec.target_modules),
        layers_to_transform=None if spec.layers_to_transform is None else list(spec.layers_to_transform),
        bias="none",
        task_type=task_type,
    )


def load_trainable_model(
    model_dir: str | Path,
    method: str,
    lora: LoraSpec,
    quant: QuantSpec,
    dtype: str = "float32",
    grad_checkpointing: bool = False,
    seed: int = 0,
    adapter: str | Path | None = None,
) -> torch.nn.Module:
    """Load the base from ``model_dir`` and make it trainable per ``method`` ('full' | 'lora' | 'qlora').

    Adapter init is seeded (``seed``) so every rank starts from identical weights. ``adapter``: continue training
    that peft adapter folder instead of a fresh one (DPO from an SFT adapter; LoRA/QLoRA only).
    """
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    kwargs: dict = {"dtype": getattr(torch, dtype)}
    if method == "qlora":
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type=quant.quant_type,
            bnb_4bit_use_double_quant=quant.double_quant,
            bnb_4bit_compute_dtype=getattr(torch, quant.compute_dtype),
        )
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), **kwargs)
    model.config.use_cache = False  # packed batches: the block-diagonal mask from position_ids needs use_cache=False
    if grad_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    if method == "full":
        return model
    from peft import get_peft_model, prepare_model_for_kbit_training

    if method == "qlora":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=grad_checkpointing)
    if adapter:
        from peft import PeftModel

        return PeftModel.from_pretrained(model, str(adapter), is_trainable=True)
    torch.manual_seed(seed)
    model = get_peft_model(model, lora_config(lora))
    with torch.no_grad():  # the adapter's start is a function of (seed, names, shapes) only: see lora_init_values
        for name, value in lora_init_values(model, seed).items():
            model.get_parameter(name).copy_(value)
    return model


def lora_init_values(model: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """Initial LoRA tensors by parameter name: A kaiming-uniform(a=√5) (peft's default ``init_lora_weights=True``),
    B zeros, drawn from one generator seeded ``seed`` in parameter-name order. Shapes and dtypes come from the
    parameters, so a base loaded in full and one built on the meta device (app/models/meta_init.py, FSDP2) start
    from the same adapter, independent of how peft's constructors consumed the global RNG."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for name, p in model.named_parameters():
        if ".lora_A." in name:
            t = torch.empty(p.shape, dtype=p.dtype)
            torch.nn.init.kaiming_uniform_(t, a=math.sqrt(5), generator=gen)
            out[name] = t
        elif ".lora_B." in name:
            out[name] = torch.zeros(p.shape, dtype=p.dtype)
    return out


def trainable_names(model: torch.nn.Module) -> list[str]:
    return [n for n, p in model.named_parameters() if p.requires_grad]
