"""Request bodies of the job API: strict (unknown fields are 422s naming the field), bounded, no free paths."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

METHODS = ("sft", "lora", "qlora", "dpo", "cpt", "reward", "ppo")
# Users name models, never server paths: a registry-known source or a registered adapter name.
_MODEL = re.compile(r"^(bundled:[a-z0-9][a-z0-9.\-]{0,63}|tiny:[a-z0-9]{1,32})$")
_FILE_ID = re.compile(r"^file-[0-9a-f]{20}$")


class Hyperparameters(BaseModel):
    """The knobs a job may set; each maps to one key of the stage config (see app.pipeline.job_config)."""

    model_config = ConfigDict(extra="forbid")

    max_steps: int = Field(20, ge=1, le=100_000, description="optimizer steps")
    learning_rate: float = Field(2e-4, gt=0, le=1, description="peak learning rate")
    batch_size: int = Field(4, ge=1, le=512, description="sequences per step")
    lora_r: int = Field(8, ge=1, le=256, description="LoRA rank")
    checkpoint_every: int = Field(10, ge=1, le=100_000, description="steps between checkpoints (bounds lost work)")
    seed: int = Field(0, ge=0, description="random seed")


class CreateJob(BaseModel):
    """POST /v1/fine-tuning/jobs."""

    model_config = ConfigDict(extra="forbid")

    base_model: str = Field(..., max_length=96, description="'bundled:smollm2-135m-instruct' or 'tiny:llama'")
    training_file: str = Field(..., description="id of an uploaded file (POST /v1/files)")
    validation_file: str | None = Field(None, description="id of an uploaded file used for validation")
    method: Literal["sft", "lora", "qlora", "dpo", "cpt", "reward", "ppo"] = Field("lora", description="training method")
    hyperparameters: Hyperparameters = Field(default_factory=Hyperparameters, description="training knobs")
    eval_config: dict[str, Any] = Field(default_factory=dict, description="gate overrides, e.g. {'enabled': false}")
    suffix: str | None = Field(None, max_length=40, pattern=r"^[A-Za-z0-9_-]+$", description="name suffix of the model")
    reward_model: str | None = Field(
        None, max_length=64, pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$",
        description="method 'ppo': one of your registered reward models (a finished method 'reward' job's model id)")
    reward_rule: Literal["gsm8k", "exact_match", "gsm8k_answer_only"] | None = Field(
        None, description="method 'ppo': a verifiable rule reward on {question, answer} prompts (with reward_model: "
        "logged beside the RM score, not added)")

    @model_validator(mode="after")
    def _reward_source(self) -> "CreateJob":
        if self.method != "ppo" and (self.reward_model or self.reward_rule):
            raise ValueError("reward_model / reward_rule apply only to method 'ppo'")
        return self

    @field_validator("base_model")
    @classmethod
    def _known_model(cls, value: str) -> str:
        if not _MODEL.match(value):
            raise ValueError("must be a known model source such as 'bundled:smollm2-135m-instruct' or 'tiny:llama'")
        return value

    @field_validator("training_file", "validation_file")
    @classmethod
    def _file_id(cls, value: str | None) -> str | None:
        if value is not None and not _FILE_ID.match(value):
            raise ValueError("must be a file id returned by POST /v1/files (file-<20 hex>)")
        return value

    @field_validator("eval_config")
    @classmethod
    def _small(cls, value: dict[str, Any]) -> dict[str, Any]:
        if len(repr(value)) > 4096:
            raise ValueError("eval_config is limited to 4 KiB")
        return value
