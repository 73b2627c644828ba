"""Reward-model training: base LM + scalar head, Bradley–Terry loss on (chosen, rejected) pairs, on Ray Train.

    r_c, r_r = score(chosen), score(rejected)      one packed forward over all 2B sequences (app/models/reward_head.py)
    loss     = −log σ(r_c − r_r)  [+ coef·mean((r_c + r_r)²)]       (app/core/preference_losses.py)
    metrics  = pair accuracy (r_c > r_r), mean margin r_c − r_r, on train batches and the held-out split

The finished model is written by :func:`app.models.reward_head.save_reward_model` and read back by
``load_reward_model(dir)`` (PPO reward actor, eval gates).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from app.config.reward import RewardConfig
from app.core.preference_losses import PreferenceStats, bradley_terry_loss, pair_stats
from app.models.reward_head import build_reward_model, save_reward_model, score_pairs


def lineage_for(cfg, method: str, config_hash: str, metrics: dict[str, float]) -> dict[str, Any]:
    """The ``rayalign_lineage.json`` contract: base, data, config hash, method, LoRA shape, metrics."""
    from app.data.artifact import load_artifact
    from app.models.loader import resolve_model

    lora = None
    if getattr(cfg, "method", "lora") == "lora" or method == "dpo":
        lora = {"r": cfg.lora.r, "alpha": cfg.lora.alpha, "target_modules": cfg.lora.target_modules}
    return {
        "base_model_source": cfg.model.source,
        "base_sha": resolve_model(cfg.model).base_sha,
        "dataset_id": load_artifact(cfg.data.artifact).id,
        "config_hash": config_hash,
        "method": method,
        "lora": lora,
        "metrics": {k: float(v) for k, v in metrics.items()},
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


class RewardMethod:
    """PreferenceMethod for reward modelling (see app/train/preference.py)."""

    name = "reward"
    columns: list[str] = []
    score_name = "scores"

    def __init__(self, cfg: RewardConfig, config_hash: str):
        from app.models.loader import load_tokenizer, resolve_model

        self.cfg, self.config_hash = cfg, config_hash
        self.base = resolve_model(cfg.model)
        self.tokenizer = load_tokenizer(self.base)

    def build_model(self) -> torch.nn.Module:
        lora = self.cfg.lora if self.cfg.method == "lora" else None
        return build_reward_model(self.base.path, lora, self.tokenizer.pad_token_id, self.cfg.model.dtype)

    def loss(self, model, rows: dict[str, list]) -> tuple[torch.Tensor, PreferenceStats]:
        chosen, rejected = score_pairs(model, rows["chosen_input_ids"], rows["rejected_input_ids"])
        loss = bradley_terry_loss(chosen, rejected)
        if self.cfg.reward.center_rewards_coef:
            loss = loss + self.cfg.reward.center_rewards_coef * ((chosen + rejected) ** 2).mean()
        return loss, pair_stats(loss, chosen, rejected)

    def save_model(self, model, folder: Path, metrics: dict[str, float]) -> None:
        save_reward_model(model, self.tokenizer, folder, lineage_for(self.cfg, "reward", self.config_hash, metrics))


def reward_loop_per_worker(loop_config: dict[str, Any]) -> None:
    """Ray Train entry: re-validate the config (plain dict across the process boundary) and train."""
    from app.train.preference import open_tracker, train_preference

    cfg = RewardConfig.model_validate(loop_config["config"])
    tracker = open_tracker(cfg.tracking, loop_config)
    try:
        train_preference(cfg, RewardMethod(cfg, loop_config["config_hash"]), loop_config["config_hash"], tracker, loop_config["run_dir"])
    finally:
        if tracker is not None:
            tracker.close()
