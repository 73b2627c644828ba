"""RewardConfig: train a scalar-head reward model (Bradley–Terry) on a preference dataset artifact.

Also home of the sub-schemas every preference job shares (DPO, sweeps): which artifact and split, and the optimisation loop
(the LoRA shape is SFT's ``LoraSpec``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from app.config.base import StrictModel
from app.config.common import ModelSpec, RaySpec, TrackingSpec
from app.config.sft import LoraSpec


class PreferenceDataSpec(StrictModel):
    """Which preference artifact to train on and how to hold out an evaluation split."""

    artifact: str = Field("", description="path of a 'preference' dataset artifact (folder with manifest.json)")
    train_split: str = Field("train", description="split to train on")
    eval_split: str = Field("validation", description="held-out split; when the artifact lacks it, eval_fraction of train is held out")
    eval_fraction: float = Field(0.2, ge=0.0, lt=1.0, description="fraction of train held out (seeded) when eval_split is absent")
    max_pairs: int | None = Field(None, ge=1, description="use at most this many training pairs (None: all)")
    max_eval_pairs: int | None = Field(None, ge=1, description="evaluate on at most this many held-out pairs (None: all)")
    max_length: int | None = Field(None, ge=8, description="drop pairs whose chosen or rejected sequence is longer (None: keep all)")


class PreferenceTrainSpec(StrictModel):
    """The optimisation loop shared by reward modelling and DPO."""

    lr: float = Field(1e-4, gt=0, description="AdamW learning rate (linear warm-up then constant)")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay")
    warmup_steps: int = Field(0, ge=0, description="linear learning-rate warm-up steps")
    epochs: int = Field(1, ge=1, description="passes over the training pairs")
    max_steps: int | None = Field(None, ge=1, description="stop after this many optimizer steps (None: epochs decide)")
    batch_size: int = Field(8, ge=1, description="preference pairs per optimizer step per worker")
    grad_clip: float = Field(1.0, gt=0, description="clip the global gradient norm to this")
    eval_every: int = Field(0, ge=0, description="evaluate on the held-out split every N steps (0: only at the end)")
    checkpoint_every: int = Field(50, ge=1, description="save a resumable checkpoint every N steps (and at the end)")
    log_every: int = Field(5, ge=1, description="report training metrics every N steps")
    seed: int = Field(0, description="seed for shuffling, held-out split and initialisation")
    num_workers: int = Field(1, ge=1, description="Ray Train workers (data-parallel, gloo on CPU)")
    cpus_per_worker: float = Field(1.0, gt=0, description="CPUs each worker reserves")
    torch_threads: int | None = Field(None, ge=1, description="torch intra-op threads per worker (None: cpus_per_worker, at least 1)")
    max_failures: int = Field(0, ge=0, description="restart workers from the latest checkpoint this many times")


class RewardSpec(StrictModel):
    """Reward-model specifics."""

    center_rewards_coef: float = Field(
        0.0, ge=0, description="add coef·mean((r_c + r_r)²) to keep scores centred near 0 (Eisenstein et al. 2023); 0: off"
    )


class RewardConfig(StrictModel):
    """Reward model = base model + scalar head, trained with the Bradley–Terry loss on chosen/rejected pairs."""

    model: ModelSpec = Field(default_factory=ModelSpec, description="base model")
    data: PreferenceDataSpec = Field(default_factory=PreferenceDataSpec, description="preference data")
    method: Literal["lora", "full"] = Field("lora", description="train a LoRA adapter (+ the full scalar head) or all weights")
    lora: LoraSpec = Field(default_factory=LoraSpec, description="LoRA adapter shape (method 'lora')")
    train: PreferenceTrainSpec = Field(default_factory=PreferenceTrainSpec, description="optimisation loop")
    reward: RewardSpec = Field(default_factory=RewardSpec, description="reward-model specifics")
    output_dir: str | None = Field(None, description="where the final reward model is written (None: <home>/adapters/<run name>)")
    ray: RaySpec = Field(default_factory=RaySpec, description="Ray cluster and run storage")
    tracking: TrackingSpec = Field(default_factory=TrackingSpec, description="MLflow tracking")
