"""The pipeline's stages: each loads its job's own YAML (+ overrides) and calls that area's code — nothing more.

Every stage takes the RunContext and returns the outputs later stages and the report need.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from app.config.errors import ConfigError
from app.config.loader import load_config
from app.config.paths import REPO_ROOT
from app.config.pipeline import StageSpec
from app.config.registry import schema_for

if TYPE_CHECKING:
    from app.pipeline.run import RunContext


def load_stage_config(ctx: RunContext, stage: StageSpec, extra: list[str] = ()):
    """The stage's job config: its YAML + the pipeline's model/ray settings + the stage's own overrides."""
    if not stage.config:
        raise ConfigError(f"pipeline '{ctx.cfg.name}': an enabled stage has no config file")
    path = (REPO_ROOT / stage.config).resolve()
    if not path.is_file():
        raise ConfigError(f"pipeline '{ctx.cfg.name}': stage config not found: {stage.config}")
    shared = [f"model.source={ctx.cfg.model.source}", f"ray.address={ctx.cfg.ray.address}"]
    schema = schema_for(path, REPO_ROOT / "configs")
    shared = [o for o in shared if o.split("=", 1)[0].split(".")[0] in schema.model_fields]
    return load_config(path, schema, [*shared, *extra, *stage.overrides])


def ingest(ctx: RunContext) -> dict[str, Any]:
    raise NotImplementedError("ingest stage: waiting for app.data")


def sft(ctx: RunContext) -> dict[str, Any]:
    raise NotImplementedError("sft stage: waiting for app.train")


def preference(ctx: RunContext) -> dict[str, Any]:
    raise NotImplementedError("preference stage: waiting for app.train.dpo / app.ppo")


def evaluate(ctx: RunContext) -> dict[str, Any]:
    raise NotImplementedError("eval stage: waiting for app.eval")


def register(ctx: RunContext) -> dict[str, Any]:
    raise NotImplementedError("register stage: waiting for app.registry")


def promote(ctx: RunContext) -> dict[str, Any]:
    raise NotImplementedError("promote stage: waiting for app.registry")


def serve_and_ask(ctx: RunContext) -> dict[str, Any]:
    raise NotImplementedError("serve stage: waiting for app.serve")
