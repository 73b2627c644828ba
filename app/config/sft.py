"""SFTConfig: supervised fine-tuning / continued pre-training on Ray Train (full, LoRA, QLoRA; DDP, FSDP2, ZeRO).

The shared sections (model, lora, quant, strategy, optim, train, checkpoint, scaling, output, fault, ray, tracking)
and the illegal-combination checks live in app/config/common.py; SFT adds its data section and ``train.objective``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from app.config.base import StrictModel
from app.config.common import (  # noqa: F401  (re-exported: the section names SFT users import from here)
    CheckpointSpec,
    FaultSpec,
    LoraSpec,
    OptimSpec,
    OutputSpec,
    QuantSpec,
    ScalingSpec,
    StrategySpec,
    TrainingConfig,
    TrainSpec,
    training_hash,
)


class SFTDataSpec(StrictModel):
    """Which packed dataset artifact to train on."""

    artifact: str = Field("", description="path to a dataset artifact folder (record_type 'sft'), written by `rayalign ingest`")
    split: str = Field("train", description="artifact split to train on")


class SFTTrainSpec(TrainSpec):
    """The shared step budget plus SFT's objective."""

    objective: Literal["sft", "cpt"] = Field("sft", description="sft: loss on unmasked labels only; cpt: continued pre-training, loss on every token")


class SFTConfig(TrainingConfig):
    """`rayalign train`: SFT / CPT with full, LoRA or QLoRA weights on Ray Train."""

    data: SFTDataSpec = Field(default_factory=SFTDataSpec, description="packed dataset artifact")
    train: SFTTrainSpec = Field(default_factory=SFTTrainSpec, description="step budget, batch, numerics, objective")
