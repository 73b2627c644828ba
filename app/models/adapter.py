"""The adapter folder contract: peft ``save_pretrained`` layout (vLLM-loadable) + ``rayalign_lineage.json``."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

LINEAGE = "rayalign_lineage.json"


def write_lineage(
    folder: str | Path,
    *,
    base_model_source: str,
    base_sha: str,
    dataset_id: str,
    config_hash: str,
    method: str,
    lora: dict[str, Any] | None,
    metrics: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``rayalign_lineage.json`` next to the weights; ``extra`` adds method-specific keys (e.g. ``dpo``)."""
    data = {
        "base_model_source": base_model_source,
        "base_sha": base_sha,
        "dataset_id": dataset_id,
        "config_hash": config_hash,
        "method": method,
        "lora": lora,
        "metrics": metrics,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **(extra or {}),
    }
    path = Path(folder) / LINEAGE
    path.write_text(json.dumps(data, indent=2, sort_keys=True), encoding="utf-8")
    return path


def read_lineage(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / LINEAGE
    if not path.is_file():
        raise FileNotFoundError(f"{folder}: no {LINEAGE} (not a rayalign adapter folder)")
    return json.loads(path.read_text(encoding="utf-8"))
