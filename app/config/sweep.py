"""SweepConfig: a Ray Tune search over dotted keys of an SFT, reward or DPO config, with ASHA early stopping.

Every trial's config = base YAML + ``overrides`` + the sampled ``key=value`` pairs, re-validated through the job's
schema (a bad sampled value fails that trial with the schema's message, never silently).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from app.config.base import StrictModel
from app.config.common import RaySpec, TrackingSpec


class ParamSpace(StrictModel):
    """One searched key: a list of values (choice / grid) or a numeric range."""

    kind: Literal["choice", "grid", "uniform", "loguniform", "randint"] = Field(
        "choice", description="choice/grid: pick from values; uniform/loguniform: float in [low, high]; randint: int in [low, high)"
    )
    values: list[float | int | str | bool] | None = Field(None, description="candidate values (choice and grid)")
    low: float | None = Field(None, description="lower bound (ranges)")
    high: float | None = Field(None, description="upper bound (ranges)")

    @model_validator(mode="after")
    def _check(self) -> "ParamSpace":
        if self.kind in ("choice", "grid"):
            if not self.values:
                raise ValueError(f"kind '{self.kind}' needs a non-empty 'values' list")
        elif self.low is None or self.high is None or not self.low < self.high:
            raise ValueError(f"kind '{self.kind}' needs low < high")
        elif self.kind == "loguniform" and self.low <= 0:
            raise ValueError("kind 'loguniform' needs low > 0")
        return self


class ASHASpec(StrictModel):
    """Asynchronous successive halving (Li et al. 2020) on the sweep metric, in training steps."""

    enabled: bool = Field(True, description="stop unpromising trials early")
    grace_period: int = Field(2, ge=1, description="steps every trial runs before it can be stopped")
    reduction_factor: float = Field(2.0, gt=1, description="keep the top 1/reduction_factor at each rung")
    max_t: int = Field(100, ge=1, description="the step count of the last rung (set to the trials' step budget)")


class SweepConfig(StrictModel):
    """`rayalign tune`: search over an SFT/reward/DPO job's config keys; one MLflow parent run, one child per trial."""

    job: Literal["dpo", "reward", "sft"] = Field("dpo", description="which training job each trial runs (any method of the one engine)")
    base_config: str = Field("", description="the job's YAML each trial starts from (configs/dpo/… or configs/reward/…)")
    overrides: list[str] = Field(default_factory=list, description="dotted key=value overrides applied to every trial")
    search_space: dict[str, ParamSpace] = Field(default_factory=dict, description="dotted config key → values or range")
    search: Literal["grid", "random", "optuna"] = Field(
        "grid", description="grid: every combination of 'grid'/'choice' keys; random: num_samples draws; optuna: TPE (needs optuna)"
    )
    num_samples: int = Field(1, ge=1, description="random/optuna: trials; grid: repeats of the full grid")
    metric: str = Field("eval/accuracy", description="trial metric to rank and stop on (a key the training loop reports)")
    mode: Literal["max", "min"] = Field("max", description="maximise or minimise the metric")
    asha: ASHASpec = Field(default_factory=ASHASpec, description="early stopping")
    max_concurrent_trials: int = Field(2, ge=1, description="trials running at once")
    seed: int = Field(0, description="seed of the search algorithm")
    output_dir: str | None = Field(None, description="results table, PNG and best adapter go here (None: <home>/sweeps/<name>)")
    name: str = Field("sweep", description="sweep name (Tune experiment and output folder)")
    ray: RaySpec = Field(default_factory=RaySpec, description="Ray cluster and run storage")
    tracking: TrackingSpec = Field(default_factory=TrackingSpec, description="MLflow tracking (parent run; trials are children)")

    @model_validator(mode="after")
    def _check(self) -> "SweepConfig":
        if not self.search_space:
            raise ValueError("search_space is empty: name at least one dotted key to search (e.g. optim.lr)")
        if self.search == "grid":
            ranged = [k for k, p in self.search_space.items() if p.kind not in ("grid", "choice")]
            if ranged:
                raise ValueError(f"search 'grid' cannot enumerate ranges {ranged}; use search 'random' or give values")
        return self
