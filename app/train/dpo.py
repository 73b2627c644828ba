"""DPO / IPO training of a LoRA policy against reference log-probs stored in the artifact, on Ray Train.

One model in memory: the reference log-probs were precomputed once by app/data/reference_logprobs.py, so a step is
one packed forward + backward of the policy over the batch's 2B sequences (LM head only at response tokens):

    π_c, π_r = log π_θ(chosen), log π_θ(rejected)                 (app/core/logprobs.py)
    loss, r_c, r_r = dpo_loss(π_c, π_r, ρ_c, ρ_r, β, type, ε)     (app/core/preference_losses.py)
    metrics: rewards/chosen = mean r_c, rewards/rejected = mean r_r, accuracy (r_c > r_r), margin, loss

The policy starts from a fresh LoRA on the base model, or continues the SFT adapter that is also the reference.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from app.config.dpo import DPOConfig
from app.core.logprobs import concat_for_packed_forward, packed_sequence_logprobs
from app.core.preference_losses import LOGPROB_TIE_TOL, PreferenceStats, dpo_loss, pair_stats
from app.data.reference_logprobs import COLUMNS as REF_COLUMNS
from app.train.reward import lineage_for


def response_token_counts(labels: list[list[int]]) -> torch.Tensor:
    """[B] number of scored tokens per sequence (labels != -100 after the one-token shift), for IPO's mean log-prob."""
    return torch.tensor([max(1, sum(1 for y in seq[1:] if y != -100)) for seq in labels], dtype=torch.float64)


class DPOMethod:
    """PreferenceMethod for DPO/IPO (see app/train/preference.py)."""

    name = "dpo"
    columns = list(REF_COLUMNS)
    score_name = "rewards"  # β·(log π − log π_ref): DPO's implicit rewards

    def __init__(self, cfg: DPOConfig, config_hash: str):
        from app.models.loader import load_tokenizer, resolve_model

        self.cfg, self.config_hash = cfg, config_hash
        self.base = resolve_model(cfg.model)
        self.tokenizer = load_tokenizer(self.base)

    def build_model(self) -> torch.nn.Module:
        from peft import PeftModel, get_peft_model
        from transformers import AutoModelForCausalLM

        from app.models.lora import lora_config

        model = AutoModelForCausalLM.from_pretrained(self.base.path, dtype=getattr(torch, self.cfg.model.dtype))
        if self.cfg.dpo.reference_adapter:
            return PeftModel.from_pretrained(model, self.cfg.dpo.reference_adapter, is_trainable=True)
        return get_peft_model(model, lora_config(self.cfg.lora, "CAUSAL_LM"))

    def loss(self, model, rows: dict[str, list]) -> tuple[torch.Tensor, PreferenceStats]:
        n = len(rows["chosen_input_ids"])
        packed = concat_for_packed_forward(rows["chosen_input_ids"] + rows["rejected_input_ids"], rows["chosen_labels"] + rows["rejected_labels"])
        logps = packed_sequence_logprobs(model, packed)
        policy_c, policy_r = logps[:n], logps[n:]
        ref_c = torch.tensor(rows["ref_chosen_logp"], dtype=torch.float64)
        ref_r = torch.tensor(rows["ref_rejected_logp"], dtype=torch.float64)
        if self.cfg.dpo.loss_type == "ipo":  # IPO compares per-token mean log-probs
            count_c, count_r = response_token_counts(rows["chosen_labels"]), response_token_counts(rows["rejected_labels"])
            policy_c, policy_r, ref_c, ref_r = policy_c / count_c, policy_r / count_r, ref_c / count_c, ref_r / count_r
        d = self.cfg.dpo
        loss, rewards_c, rewards_r = dpo_loss(policy_c, policy_r, ref_c, ref_r, d.beta, d.loss_type, d.label_smoothing)
        return loss, pair_stats(loss, rewards_c, rewards_r, tie_tol=d.beta * LOGPROB_TIE_TOL)

    def save_model(self, model, folder: Path, metrics: dict[str, float]) -> None:
        import json

        folder.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(folder)
        lineage = lineage_for(self.cfg, "dpo", self.config_hash, metrics)
        lineage["dpo"] = {"loss_type": self.cfg.dpo.loss_type, "beta": self.cfg.dpo.beta, "reference_adapter": self.cfg.dpo.reference_adapter}
        (folder / "rayalign_lineage.json").write_text(json.dumps(lineage, indent=2, sort_keys=True), encoding="utf-8")


def dpo_loop_per_worker(loop_config: dict[str, Any]) -> None:
    """Ray Train entry: re-validate the config (plain dict across the process boundary) and train."""
    from app.train.preference import open_tracker, train_preference

    cfg = DPOConfig.model_validate(loop_config["config"])
    tracker = open_tracker(cfg.tracking, loop_config)
    try:
        train_preference(cfg, DPOMethod(cfg, loop_config["config_hash"]), loop_config["config_hash"], tracker, loop_config["run_dir"])
    finally:
        if tracker is not None:
            tracker.close()
