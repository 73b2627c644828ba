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

DeepSpeed ZeRO-3 the same way (``partitioned_trainable_model``, same ``fill``): every module is built inside
``deepspeed.zero.Init`` with transformers' ``no_init_weights`` (as transformers' own ZeRO-3 ``from_pretrained``), so
each weight is an untouched ``torch.empty`` (no resident pages) until ``zero.Init`` copies this rank's flat range
into its partition, and ``fill`` then writes each partition from the safetensors rows that hold its range. Unlike
``from_pretrained`` (which gathers every module in full to load it), no rank ever holds a full tensor.
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


def copy_local(param: torch.Tensor, source) -> None:
    """Copy this rank's part of the full tensor ``source`` (a tensor, or a safetensors slice: only the rows that hold
    the part are read) into ``param``'s local storage: FSDP2's Shard(0) rows, a ZeRO-3 partition (the flat range
    ``[rank·p, rank·p + p)`` of the flattened tensor, zero-padded past its end, as ``Init._partition_param`` cuts it), or
    the whole tensor for a parameter that is neither."""
    if hasattr(param, "ds_tensor"):
        import deepspeed.comm as ds_dist

        part = param.ds_tensor.view(-1)
        lo = part.numel() * ds_dist.get_rank(group=param.ds_process_group)
        hi = min(lo + part.numel(), param.ds_numel)
        part[max(0, hi - lo):].zero_()
        if hi > lo:
            cols = param.ds_numel // param.ds_shape[0]
            r0, r1 = lo // cols, -(-hi // cols)
            part[: hi - lo].copy_(source[r0:r1].reshape(-1)[lo - r0 * cols : hi - r0 * cols])
        return
    local, first = local_rows(param)
    local.copy_(source[first : first + local.shape[0]])


def partition_only_init(ds_config: dict):
    """``deepspeed.zero.Init`` without its broadcast of rank 0's values before partitioning (DeepSpeed 0.19
    ``Init._zero_init_param``: convert, broadcast, partition). The broadcast makes randomly initialised weights
    agree across ranks; here every rank writes its own partition from the checkpoint right after (``fill``), and
    the broadcast would only write a full copy of each tensor on every rank but 0 (the 32000 x 2048 output head
    of a 1 B Llama: +125 MiB bf16 on top of all its shards)."""
    from app.models.lean_imports import import_deepspeed

    init_cls = import_deepspeed().zero.Init
    if not all(hasattr(init_cls, m) for m in ("_zero_init_param", "_convert_to_deepspeed_param")):
        raise RuntimeError("this DeepSpeed's zero.Init has no _zero_init_param/_convert_to_deepspeed_param: "
                           "app/models/meta_init.partition_only_init needs updating")

    class PartitionOnlyInit(init_cls):
        def _zero_init_param(self, param):
            self._convert_to_deepspeed_param(param)
            param.partition()

    return PartitionOnlyInit(config_dict_or_path=ds_config)


def zero3_dtype(ds_config: dict) -> torch.dtype:
    """The dtype ``zero.Init`` gives the weights under ``ds_config`` (bf16 when enabled, else fp32, on CPU and GPU)."""
    return torch.bfloat16 if ds_config.get("bf16", {}).get("enabled") else torch.float32


def partitioned_empty_model(config, ds_config: dict) -> torch.nn.Module:
    """The causal LM of ``config`` with every weight a ZeRO-3 partition of unset values (``fill`` writes them).
    Built in zero.Init's own dtype, so its tensor constructors convert nothing (a conversion would write a full
    copy); ``set_zero3_state`` tells transformers a zero.Init is already open (no nested one, no gathered init)."""
    from transformers import AutoModelForCausalLM
    from transformers.initialization import no_init_weights
    from transformers.modeling_utils import set_zero3_state

    with no_init_weights(), partition_only_init(ds_config), set_zero3_state():
        model = AutoModelForCausalLM.from_config(config, dtype=zero3_dtype(ds_config))
    model.tie_weights()  # no_init_weights skipped post_init's init_weights, which also ties
    return model


def partitioned_trainable_model(model_dir: str | Path, method: str, lora: LoraSpec, ds_config: dict,
                                grad_checkpointing: bool = False, seed: int = 0) -> torch.nn.Module:
    """``load_trainable_model``'s trainable model (method 'full' or 'lora', fresh adapter) under DeepSpeed ZeRO-3,
    built partitioned and filled from the checkpoint: each rank holds only its partitions from the start."""
    from transformers import AutoConfig

    if method not in ("full", "lora"):
        raise ValueError(f"partitioned ZeRO-3 init supports method full or lora, not {method!r}")
    hf_model = partitioned_empty_model(AutoConfig.from_pretrained(str(model_dir)), ds_config)
    model, fill = _trainable(hf_model, model_dir, method, lora, grad_checkpointing, seed)
    fill()
    return model


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
    return _trainable(model, model_dir, method, lora, grad_checkpointing, seed)


def _trainable(model: torch.nn.Module, model_dir: str | Path, method: str, lora: LoraSpec, grad_checkpointing: bool,
               seed: int) -> tuple[torch.nn.Module, Callable[[], None]]:
    """``load_trainable_model``'s steps after loading (eval mode, no cache, gradient checkpointing, fresh LoRA with
    its seeded start) on a base without values yet, and the ``fill`` that writes this rank's part of every tensor."""
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
            if name in lora_values:
                copy_local(p, lora_values[name])
                continue
            key = checkpoint_key(name)
            if key not in files:
                raise KeyError(f"{model_dir}: checkpoint has no tensor {key!r} for parameter {name}")
            with safe_open(str(files[key]), "pt") as f:  # one mapping per tensor: only its pages are ever mapped
                copy_local(p, f.get_slice(key))
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
