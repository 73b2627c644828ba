"""Resolve a model source to a local HF folder, load model + tokenizer, and report the base weights' SHA.

Sources: ``bundled:<name>`` (real SmolLM2 from GGUF), ``tiny:llama`` (random tiny model for tests), a local HF
folder, a ``.gguf`` file (converted once to a cached HF folder), or a hub id (real code path; fails offline with
a clear message).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from app.config.common import ModelSpec
from app.config.paths import rayalign_home
from app.models.bundled import convert_gguf_to_hf, ensure_bundled_model
from app.models.tiny import build_tiny_model
from app.models.weights_sha import compute_weights_sha


class ModelLoadError(RuntimeError):
    """A model source could not be resolved or loaded; the message says which and why."""


@dataclass(frozen=True)
class ResolvedModel:
    """A base model on local disk, ready for transformers/peft/vLLM."""

    source: str
    path: Path

    @property
    def base_sha(self) -> str:
        return base_sha(self.path)


def base_sha(model_dir: str | Path) -> str:
    """Content SHA of the weights, cached beside them keyed on file sizes and mtimes (recomputed when they change)."""
    folder = Path(model_dir)
    files = sorted(folder.glob("*.safetensors"))
    stamp = hashlib.sha256("|".join(f"{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files).encode()).hexdigest()
    cache = folder / ".rayalign_sha_cache"
    if cache.is_file():
        cached_stamp, _, sha = cache.read_text().strip().partition(" ")
        if cached_stamp == stamp and sha:
            return sha
    sha = compute_weights_sha(folder)
    try:
        cache.write_text(f"{stamp} {sha}\n")
    except OSError:
        pass  # read-only model folder: fine, just not cached
    return sha


def resolve_model(source: str | ModelSpec) -> ResolvedModel:
    """Turn a model source string into a local HF folder (converting or building it on first use)."""
    spec = source if isinstance(source, ModelSpec) else ModelSpec(source=source)
    src = spec.source
    if src.startswith("bundled:"):
        try:
            return ResolvedModel(src, ensure_bundled_model(src.split(":", 1)[1]))
        except ValueError as exc:
            raise ModelLoadError(str(exc)) from None
    if src.startswith("tiny:"):
        preset = src.split(":", 1)[1]
        if preset != "llama":
            raise ModelLoadError(f"unknown tiny preset '{preset}' (known: llama)")
        out = rayalign_home() / "models" / "tiny-llama"
        with FileLock(str(out) + ".lock"):
            if not (out / "config.json").is_file():
                build_tiny_model(out)
        return ResolvedModel(src, out)
    path = Path(src).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ModelLoadError(f"GGUF file not found: {path}")
        digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
        out = rayalign_home() / "models" / f"gguf-{path.stem}-{digest}"
        with FileLock(str(out) + ".lock"):
            if not (out / "config.json").is_file():
                convert_gguf_to_hf(path, out)
        return ResolvedModel(src, out)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"{path} is a folder but has no config.json (not a Hugging Face model folder)")
        return ResolvedModel(src, path)
    if src.startswith((".", "/", "~")):
        raise ModelLoadError(f"model path not found: {path}")
    return ResolvedModel(src, _download_from_hub(src, spec.revision))


def _download_from_hub(repo_id: str, revision: str | None) -> Path:
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, revision=revision, allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja"]))
    except Exception as exc:  # noqa: BLE001 - every hub failure becomes the same actionable message
        raise ModelLoadError(
            f"could not fetch '{repo_id}' from the Hugging Face hub ({type(exc).__name__}). Offline? Use a local "
            f"folder, a .gguf file or 'bundled:smollm2-135m-instruct' instead."
        ) from None


def load_tokenizer(source: str | ModelSpec | ResolvedModel):
    """The tokenizer (with chat template) of a model source."""
    from transformers import AutoTokenizer

    resolved = source if isinstance(source, ResolvedModel) else resolve_model(source)
    tok = AutoTokenizer.from_pretrained(resolved.path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(source: str | ModelSpec | ResolvedModel, dtype: str = "float32"):
    """The causal LM of a model source, in eval mode, on CPU."""
    import torch
    from transformers import AutoModelForCausalLM

    resolved = source if isinstance(source, ResolvedModel) else resolve_model(source)
    if isinstance(source, ModelSpec):
        dtype = source.dtype
    model = AutoModelForCausalLM.from_pretrained(resolved.path, dtype=getattr(torch, dtype))
    model.eval()
    return model
