"""DPOConfig: direct preference optimisation of a LoRA policy against precomputed reference log-probs."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from app.config.base import StrictModel
from app.config.common import ModelSpec, RaySpec, TrackingSpec
from app.config.reward import PreferenceDataSpec, PreferenceTrainSpec
from app.config.sft import LoraSpec


class DPOSpec(StrictModel):
    """DPO / IPO loss and reference model."""

    loss_type: Literal["sigmoid", "ipo"] = Field("sigmoid", description="'sigmoid' (DPO, Rafailov 2023) or 'ipo' (Azar 2023)")
    beta: float = Field(0.1, gt=0, description="β: strength of the implicit KL constraint to the reference")
    label_smoothing: float = Field(0.0, ge=0, lt=0.5, description="conservative DPO: assumed fraction of flipped labels (sigmoid only)")
    reference_adapter: str | None = Field(
        None, description="SFT adapter folder used as the reference AND as the policy's starting point (None: the base model)"
    )
    precompute_batch_size: int = Field(8, ge=1, description="pairs per Ray Data batch when precomputing reference log-probs")
    precompute_cpus: float = Field(1.0, gt=0, description="CPUs for the reference-scoring Ray Data actor")


class DPOConfig(StrictModel):
    """DPO: one model in memory (the LoRA policy); reference log-probs are read from the artifact."""

    model: ModelSpec = Field(default_factory=ModelSpec, description="base model")
    data: PreferenceDataSpec = Field(default_factory=PreferenceDataSpec, description="preference data")
    lora: LoraSpec = Field(default_factory=LoraSpec, description="policy LoRA adapter (ignored when reference_adapter is set: that adapter is trained)")
    train: PreferenceTrainSpec = Field(
        default_factory=lambda: PreferenceTrainSpec(lr=5e-5), description="optimisation loop"
    )
    dpo: DPOSpec = Field(default_factory=DPOSpec, description="loss and reference")
    output_dir: str | None = Field(None, description="where the final adapter is written (None: <home>/adapters/<run name>)")
    ray: RaySpec = Field(default_factory=RaySpec, description="Ray cluster and run storage")
    tracking: TrackingSpec = Field(default_factory=TrackingSpec, description="MLflow tracking")
