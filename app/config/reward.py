"""RewardConfig: train a scalar-head reward model (Bradley–Terry) on a preference dataset artifact.

The training envelope (model, method, lora, strategy, optim, train, checkpoint, scaling, output, …) is shared with
every method (app/config/common.py); reward modelling adds the preference data section and its ``reward`` section.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from app.config.base import StrictModel
from app.config.common import TrainingConfig
from app.config.preference import PreferenceDataSpec, PreferenceTrainSpec


class RewardSpec(StrictModel):
    """Reward-model specifics."""

    center_rewards_coef: float = Field(
        0.0, ge=0, description="add coef·mean((r_c + r_r)²) to keep scores centred near 0 (Eisenstein et al. 2023); 0: off"
    )


class RewardConfig(TrainingConfig):
    """Reward model = base model + scalar head, trained with the Bradley–Terry loss on chosen/rejected pairs."""

    data: PreferenceDataSpec = Field(default_factory=PreferenceDataSpec, description="preference data")
    train: PreferenceTrainSpec = Field(default_factory=PreferenceTrainSpec, description="step budget, batch (pairs), eval cadence")
    reward: RewardSpec = Field(default_factory=RewardSpec, description="reward-model specifics")

    @model_validator(mode="after")
    def _reward_methods(self) -> "RewardConfig":
        if self.method == "qlora":
            raise ValueError("method: reward models train 'lora' (adapter + full scalar head) or 'full' weights; 'qlora' is SFT/DPO only")
        return self
