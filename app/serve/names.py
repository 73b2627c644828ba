"""Model-name grammar of the API: ``<base>``, ``<adapter>`` or ``<base>:<adapter>``; names are safe path segments."""

from __future__ import annotations

import re
from dataclasses import dataclass

from app.serve.errors import BadRequest, NotFound

_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")  # fullmatch: '$' alone would let a trailing newline through


def validate_name(name: str, what: str = "adapter") -> str:
    """A tenant or adapter name: lowercase letters, digits, '.', '_', '-' (≤64), never '..' — no path traversal."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or ".." in name:
        raise BadRequest(f"invalid {what} name {name!r}: use a-z, 0-9, '.', '_', '-' (max 64, no '..')", param="model")
    return name


@dataclass(frozen=True)
class ModelRef:
    """What a request's ``model`` field asks for: the base alone, or one adapter on it."""

    base: str
    adapter: str | None


def parse_model(model: str, served_name: str) -> ModelRef:
    """Split ``model`` into base + adapter. ``served_name`` alone is the base; another base name is a 404."""
    if not isinstance(model, str) or not model:
        raise BadRequest("'model' is required", param="model")
    if len(model) > 200:
        raise BadRequest("'model' is too long", param="model")
    if model.startswith("ft:"):  # a fine-tuning job's model id, ft:<base>:<tenant>:<suffix>:<id>: the resolver's to map
        parts = model.split(":")
        if len(parts) != 5 or not all(_NAME.fullmatch(p) for p in (parts[1], parts[2], parts[4])) or \
                (parts[3] and not _NAME.fullmatch(parts[3])):
            raise BadRequest(f"invalid fine-tuned model id {model!r}: expected ft:<base>:<tenant>:<suffix>:<id>",
                             param="model")
        if parts[1] != served_name:
            raise NotFound(f"model '{model}' is not served here (base: '{served_name}')", param="model")
        return ModelRef(served_name, model)
    if ":" in model:
        base, _, adapter = model.partition(":")
        if base != served_name:
            raise NotFound(f"model '{base}' is not served here (base: '{served_name}')", param="model")
        return ModelRef(base, validate_name(adapter))
    if model == served_name:
        return ModelRef(served_name, None)
    return ModelRef(served_name, validate_name(model))


def served_name_for(source: str, override: str | None = None) -> str:
    """The base model's name in the API: ``override``, else derived from the model source
    (``bundled:smollm2-135m-instruct`` → ``smollm2-135m-instruct``, ``tiny:llama`` → ``tiny-llama``, a path → its folder name)."""
    if override:
        return override
    if source.startswith("bundled:"):
        raw = source.split(":", 1)[1]
    elif source.startswith("tiny:"):
        raw = "tiny-" + source.split(":", 1)[1]
    else:
        raw = source.rstrip("/").rsplit("/", 1)[-1].removesuffix(".gguf")
    cleaned = re.sub(r"[^a-z0-9._-]+", "-", raw.lower()).strip("-.") or "base"
    return cleaned[:64]
