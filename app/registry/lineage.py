"""Read and validate an artifact folder's ``rayalign_lineage.json`` (local path or any fsspec URL such as s3://)."""

from __future__ import annotations

import json
import re
from typing import Any

import fsspec

from app.registry.errors import RegistryError

LINEAGE_FILE = "rayalign_lineage.json"
REQUIRED = ("base_model_source", "base_sha", "dataset_id", "config_hash", "method")
_SHA = re.compile(r"^[0-9a-f]{16,64}$")


def join_uri(uri: str, *parts: str) -> str:
    return "/".join([uri.rstrip("/"), *parts])


def artifact_kind(uri: str) -> str:
    """'adapter' for a peft folder (adapter_config.json), 'full' for a HF model folder (config.json)."""
    fs, path = fsspec.core.url_to_fs(uri)
    if fs.exists(join_uri(path, "adapter_config.json")):
        return "adapter"
    if fs.exists(join_uri(path, "config.json")):
        return "full"
    raise RegistryError(f"{uri}: neither adapter_config.json (peft adapter) nor config.json (full model) found")


def read_lineage(uri: str) -> dict[str, Any]:
    """The lineage record of an artifact folder, checked field by field (errors name the file and the field)."""
    fs, path = fsspec.core.url_to_fs(uri)
    file = join_uri(path, LINEAGE_FILE)
    where = join_uri(uri, LINEAGE_FILE)
    if not fs.exists(file):
        raise RegistryError(f"{where}: missing (every trained artifact must carry its lineage)")
    try:
        with fs.open(file, "r") as fh:
            data = json.load(fh)
    except json.JSONDecodeError as exc:
        raise RegistryError(f"{where}: invalid JSON at line {exc.lineno}: {exc.msg}") from None
    if not isinstance(data, dict):
        raise RegistryError(f"{where}: top level must be an object")
    for key in REQUIRED:
        if not isinstance(data.get(key), str) or not data[key].strip():
            raise RegistryError(f"{where}: field '{key}' is required and must be a non-empty string")
    if not _SHA.match(data["base_sha"]):
        raise RegistryError(f"{where}: field 'base_sha' must be a lowercase hex sha256, got {data['base_sha']!r}")
    lora = data.get("lora")
    if lora is not None:
        if not isinstance(lora, dict):
            raise RegistryError(f"{where}: field 'lora' must be an object with r, alpha, target_modules")
        for key in ("r", "alpha", "target_modules"):
            if key not in lora:
                raise RegistryError(f"{where}: field 'lora.{key}' is required")
        if not isinstance(lora["r"], int) or lora["r"] <= 0:
            raise RegistryError(f"{where}: field 'lora.r' must be a positive integer, got {lora['r']!r}")
    metrics = data.get("metrics", {})
    if not isinstance(metrics, dict):
        raise RegistryError(f"{where}: field 'metrics' must be an object")
    return data
