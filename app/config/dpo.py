"""DPOConfig: direct preference optimisation against reference log-probs precomputed into the artifact.

The training envelope is shared with every method (app/config/common.py); DPO adds the preference data section and
its ``dpo`` section, where the loss family (``loss_type``) lives and grows.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from app.config.base import StrictModel
from app.config.common import TrainingConfig
from app.config.preference import PreferenceDataSpec, PreferenceTrainSpec


class DPOSpec(StrictModel):
    """The preference loss and the reference model."""

    loss_type: Literal["sigmoid", "ipo"] = Field("sigmoid", description="'sigmoid' (DPO, Rafailov 2023) or 'ipo' (Azar 2023)")
    beta: float = Field(0.1, gt=0, description="β: strength of the implicit KL constraint to the reference")
    label_smoothing: float = Field(0.0, ge=0, lt=0.5, description="conservative DPO: assumed fraction of flipped labels (sigmoid only)")
    reference_adapter: str | None = Field(
        None, description="SFT adapter folder used as the reference AND as the policy's starting point (None: the base model)"
    )
    precompute_batch_size: int = Field(8, ge=1, description="pairs per Ray Data batch when precomputing reference log-probs")
    precompute_cpus: float = Field(1.0, gt=0, description="CPUs for the reference-scoring Ray Data actor")


class DPOConfig(TrainingConfig):
    """DPO: one model in memory (the policy); reference log-probs are read from the artifact."""

    data: PreferenceDataSpec = Field(default_factory=PreferenceDataSpec, description="preference data")
    train: PreferenceTrainSpec = Field(default_factory=PreferenceTrainSpec, description="step budget, batch (pairs), eval cadence")
    dpo: DPOSpec = Field(default_factory=DPOSpec, description="loss and reference")

    @model_validator(mode="after")
    def _reference_adapter_needs_lora(self) -> "DPOConfig":
        if self.dpo.reference_adapter and self.method != "lora":
            raise ValueError(f"dpo.reference_adapter continues that LoRA adapter: it needs method 'lora', not '{self.method}'")
        return self
