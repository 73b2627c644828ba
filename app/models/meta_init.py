"""FSDP2 without a full copy of the base on any rank: build on the meta device, shard, fill only the local rows.

    model, fill = meta_trainable_model(model_dir, method, lora, dtype, grad_checkpointing, seed)   # no storage yet
    fully_shard(...) per decoder layer + root                       # DTensor parameters, Shard(0), still on meta
    model.to_empty(device=...)                                      # storage for this rank's rows only
    fill()                                                          # rows [r·⌈n/w⌉, (r+1)·⌈n/w⌉) of every tensor

``fill`` reads each base tensor's local rows straight from the checkpoint's safetensors (``safe_open(...)
.get_slice(name)[lo:hi]``, one file mapping open per tensor, so at most one tensor's pages are mapped), recomputes
the non-persistent buffers (rotary ``inv_freq``: transformers' own ``_init_weights`` for those modules) and writes
LoRA's initial values (``app.models.lora.lora_init_values``: the same seeded values ``load_trainable_model`` gives a
fully loaded base, so both paths train identically). torch's FSDP2 recipe for large models is the same
(meta-device init, ``fully_shard``, ``to_empty``, initialise / load the shards).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import torch

from app.config.common import LoraSpec
from app.models.lora import lora_config, lora_init_values


def checkpoint_files(model_dir: str | Path) -> dict[str, Path]:
    """Tensor name → the safetensors file that holds it (single file or an ``*.index.json`` shard map)."""
    folder = Path(model_dir)
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        return {k: folder / f for k, f in json.loads(index.read_text())["weight_map"].items()}
    single = folder / "model.safetensors"
    if not single.is_file():
        raise FileNotFoundError(f"{folder}: no model.safetensors(.index.json); meta-device loading reads safetensors only")
    from safetensors import safe_open

    with safe_open(str(single), "pt") as f:
        return {k: single for k in f.keys()}


def checkpoint_key(param_name: str) -> str:
    """The checkpoint name of a base parameter of a (peft-wrapped) causal LM: peft's prefix and ``.base_layer`` go."""
    return param_name.removeprefix("base_model.model.").replace(".base_layer.", ".")


def local_rows(param: torch.Tensor) -> tuple[torch.Tensor, int]:
    """(this rank's local tensor, its first global row) of an FSDP2 parameter (DTensor, Shard(0): torch.chunk rows)."""
    from torch.distributed.tensor import DTensor, Shard

    if not isinstance(param, DTensor):
        return param, 0
    if tuple(param.placements) != (Shard(0),):
        raise ValueError(f"meta-device loading expects FSDP2's Shard(0) parameters, got {param.placements}")
    mesh = param.device_mesh
    chunk = -(-param.shape[0] // mesh.size())  # ceil
    return param.to_local(), mesh.get_local_rank() * chunk


def meta_trainable_model(model_dir: str | Path, method: str, lora: LoraSpec, dtype: str = "float32",
                         grad_checkpointing: bool = False, seed: int = 0) -> tuple[torch.nn.Module, Callable[[], None]]:
    """The trainable model of ``load_trainable_model`` (method 'full' or 'lora', fresh adapter) with every tensor on
    the meta device, and ``fill()`` to call after ``fully_shard`` + ``to_empty``: it loads this rank's rows."""
    from transformers import AutoConfig, AutoModelForCausalLM

    if method not in ("full", "lora"):
        raise ValueError(f"meta-device init supports method full or lora, not {method!r}")
    config = AutoConfig.from_pretrained(str(model_dir))
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype))
    model.eval()  # as from_pretrained returns it; the loops switch to train()
    model.config.use_cache = False
    if grad_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    hf_model = model
    if method == "lora":
        from peft import get_peft_model

        model = get_peft_model(model, lora_config(lora))
    lora_values = lora_init_values(model, seed)
    files = checkpoint_files(model_dir)

    @torch.no_grad()
    def fill() -> None:
        from safetensors import safe_open

        for name, p in model.named_parameters():
            local, first = local_rows(p)
            if name in lora_values:
                local.copy_(lora_values[name][first : first + local.shape[0]])
                continue
            key = checkpoint_key(name)
            if key not in files:
                raise KeyError(f"{model_dir}: checkpoint has no tensor {key!r} for parameter {name}")
            with safe_open(str(files[key]), "pt") as f:  # one mapping per tensor: only its pages are ever mapped
                local.copy_(f.get_slice(key)[first : first + local.shape[0]])
        recomputed: set[str] = set()
        for name, buf in model.named_buffers():
            module_name, _, buf_name = name.rpartition(".")
            owner = model.get_submodule(module_name)
            if buf_name in owner._non_persistent_buffers_set:
                if module_name not in recomputed:  # once per module: it recomputes all its buffers (inv_freq and
                    hf_model._init_weights(owner)  # original_inv_freq of a rotary embedding): transformers' own init
                    recomputed.add(module_name)
            elif checkpoint_key(name) in files:
                with safe_open(str(files[checkpoint_key(name)]), "pt") as f:
                    buf.copy_(f.get_tensor(checkpoint_key(name)))
            else:
                raise KeyError(f"{model_dir}: checkpoint has no buffer {checkpoint_key(name)!r}")

    return model, fill
