"""Content SHA-256 of a model's weights, independent of file layout: the base-model identity used for lineage."""

from __future__ import annotations

import hashlib
from contextlib import ExitStack
from pathlib import Path

import torch
from safetensors import safe_open


def compute_weights_sha(model_dir: str | Path) -> str:
    """sha256 over every tensor (sorted by name): name, dtype, shape and raw bytes.

    Two folders with the same tensors hash equal even when sharded differently; any changed value changes the hash.
    """
    files = sorted(Path(model_dir).glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{model_dir}: no *.safetensors files to hash")
    digest = hashlib.sha256()
    with ExitStack() as stack:
        handles = [stack.enter_context(safe_open(str(f), framework="pt")) for f in files]
        owner = {key: h for h in handles for key in h.keys()}
        for key in sorted(owner):
            tensor = owner[key].get_tensor(key).contiguous()
            digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
