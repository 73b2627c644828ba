"""The sections reward modelling and DPO share on top of the training envelope (app/config/common.py):
which preference artifact, how to hold out an evaluation split, and how often to evaluate on it."""

from __future__ import annotations

from pydantic import Field

from app.config.base import StrictModel
from app.config.common import TrainSpec


class PreferenceDataSpec(StrictModel):
    """Which preference artifact to train on and how to hold out an evaluation split."""

    artifact: str = Field("", description="path of a 'preference' dataset artifact (folder with manifest.json)")
    train_split: str = Field("train", description="split to train on")
    eval_split: str = Field("validation", description="held-out split; when the artifact lacks it, eval_fraction of train is held out")
    eval_fraction: float = Field(0.2, ge=0.0, lt=1.0, description="fraction of train held out (seeded) when eval_split is absent")
    max_pairs: int | None = Field(None, ge=1, description="use at most this many training pairs (None: all)")
    max_eval_pairs: int | None = Field(None, ge=1, description="evaluate on at most this many held-out pairs (None: all)")
    max_length: int | None = Field(None, ge=8, description="drop pairs whose chosen or rejected sequence is longer (None: keep all)")


class PreferenceTrainSpec(TrainSpec):
    """The shared step budget (train.micro_batch_size counts pairs) plus the held-out evaluation cadence."""

    micro_batch_size: int = Field(8, ge=1, description="preference pairs per worker per forward pass")
    log_every: int = Field(5, ge=1, description="report training metrics every N steps")
    eval_every: int = Field(0, ge=0, description="evaluate on the held-out split every N steps (0: before training and at the end only)")

