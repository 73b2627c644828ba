"""Which schema validates which YAML under configs/: by exact relative path first, then by folder.

Schemas are named as import strings so that adding a job never means importing every other job's code.
Files under ``configs/tiny/`` are smoke-test twins; their schema is the prefix of the file name (``sft_lora.yaml`` → sft).
"""

from __future__ import annotations

import importlib
from pathlib import Path

from pydantic import BaseModel

from app.config.errors import ConfigError

SCHEMAS: dict[str, str] = {
    "ingest": "app.config.ingest:IngestConfig",
    "sft": "app.config.sft:SFTConfig",
    "reward": "app.config.reward:RewardConfig",
    "dpo": "app.config.dpo:DPOConfig",
    "sweep": "app.config.sweep:SweepConfig",
    "ppo": "app.config.ppo:PPOConfig",
    "eval": "app.config.eval:EvalConfig",
    "eval/gates.yaml": "app.config.eval:GatesConfig",
    "serve": "app.config.serve:ServeConfig",
    "pipeline": "app.config.pipeline:PipelineConfig",
    "plan": "app.config.plan:PlanConfig",
}


def import_schema(spec: str) -> type[BaseModel]:
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


def schema_key_for(path: str | Path, configs_root: str | Path) -> str:
    """The SCHEMAS key for a YAML file under ``configs_root``."""
    try:
        rel = Path(path).resolve().relative_to(Path(configs_root).resolve())
    except ValueError:
        raise ConfigError(f"{path}: not under the configs root {configs_root} (pass --configs-root)") from None
    if rel.as_posix() in SCHEMAS:
        return rel.as_posix()
    folder = rel.parts[0]
    if folder == "tiny":
        return rel.stem.split("_", 1)[0]
    return folder


def schema_for(path: str | Path, configs_root: str | Path) -> type[BaseModel]:
    """The schema class for a config file, or a ConfigError naming the file when none is registered."""
    key = schema_key_for(path, configs_root)
    if key not in SCHEMAS:
        raise ConfigError(f"{path}: no schema registered for '{key}' (known: {', '.join(sorted(SCHEMAS))})")
    return import_schema(SCHEMAS[key])
