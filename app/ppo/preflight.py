"""Checks a PPO run makes before any actor starts: every input model exists, is what it claims, and shares the base.

Each failure is one sentence naming the config key (a ``ConfigError``), raised in the driver process in well under a
second — not a stack trace from inside a Ray actor minutes later. Returns what the run's lineage records about its
parents (SFT adapter, reward model and their datasets).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from app.config.errors import ConfigError
from app.config.ppo import PPOConfig


def _short(sha: str | None) -> str:
    return (sha or "?")[:12]


def check_init_adapter(path: str, base_sha: str, base_source: str) -> dict[str, Any]:
    """The SFT adapter's lineage; refuses a folder that is not a LoRA adapter of this base."""
    from app.models.adapter import read_lineage

    folder = Path(path).expanduser()
    if not (folder / "adapter_config.json").is_file():
        raise ConfigError(f"init.adapter {folder}: not a LoRA adapter folder (no adapter_config.json)")
    try:
        lineage = read_lineage(folder)
    except FileNotFoundError as exc:
        raise ConfigError(f"init.adapter {exc}") from None
    if lineage.get("method") == "reward":
        raise ConfigError(f"init.adapter {folder}: is a reward model, not a policy adapter")
    if lineage.get("base_sha") != base_sha:
        raise ConfigError(f"init.adapter {folder}: trained on base SHA {_short(lineage.get('base_sha'))}, but the "
                          f"policy's base ({base_source}) is {_short(base_sha)}")
    return lineage


def adapter_rank(path: str) -> int:
    return int(json.loads((Path(path).expanduser() / "adapter_config.json").read_text())["r"])


def check_reward_model(path: str, base_sha: str, base_source: str) -> dict[str, Any]:
    """The reward model's lineage; refuses a folder without a score head or trained on another base."""
    from app.models.loader import ModelLoadError
    from app.models.reward_head import check_reward_model_folder

    try:
        lineage = check_reward_model_folder(path)
    except ModelLoadError as exc:
        raise ConfigError(f"reward.model_path {exc}") from None
    if lineage["base_sha"] != base_sha:
        raise ConfigError(
            f"reward.model_path {path}: the reward model was trained on base SHA {_short(lineage['base_sha'])} "
            f"({lineage.get('base_model_source')}), the policy's base ({base_source}) is {_short(base_sha)}; a reward "
            "model only scores text of the base it was trained on — train one on this base")
    return lineage


def check_inputs(cfg: PPOConfig, base_sha: str) -> dict[str, Any]:
    """Run every pre-flight check; returns the parents for the PPO adapter's lineage."""
    parents: dict[str, Any] = {"prompts_dataset": str(cfg.prompts.path)}
    if cfg.init.adapter:
        sft = check_init_adapter(cfg.init.adapter, base_sha, cfg.model.source)
        if cfg.rollout.backend == "vllm" and adapter_rank(cfg.init.adapter) > cfg.rollout.vllm_max_lora_rank:
            raise ConfigError(f"rollout.vllm_max_lora_rank {cfg.rollout.vllm_max_lora_rank} is below the rank "
                              f"{adapter_rank(cfg.init.adapter)} of init.adapter {cfg.init.adapter}")
        parents["init_adapter"] = {"path": str(Path(cfg.init.adapter).expanduser().resolve()),
                                   "method": sft.get("method"), "dataset_id": sft.get("dataset_id"),
                                   "config_hash": sft.get("config_hash")}
    if cfg.reward.kind in ("model", "sum"):
        rm = check_reward_model(cfg.reward.model_path, base_sha, cfg.model.source)
        parents["reward_model"] = {"path": str(Path(cfg.reward.model_path).expanduser().resolve()),
                                   "dataset_id": rm.get("dataset_id"), "config_hash": rm.get("config_hash"),
                                   "metrics": rm.get("metrics", {})}
    return parents
