"""OpenAI's fine-tuning request (``client.fine_tuning.jobs.create``) → rayalign's job request, and the objects back.

    {"model": "tiny-llama", "training_file": "file-…", "method": {"type": "supervised" | "dpo" | "reinforcement",
     "supervised": {"hyperparameters": {"n_epochs": 2, "batch_size": 4, "learning_rate_multiplier": 0.5}}},
     "suffix": "demo", "seed": 7, "metadata": {...}, "validation_file": "file-…", "integrations": [...]}

``method.type`` maps to the stage that trains: supervised → LoRA SFT, dpo → DPO, reinforcement → GRPO (PPO stage)
with the grader as reward source (``string_check`` eq → the exact-match rule, ``score_model`` → one of the tenant's
registered reward models, or the rayalign extension ``{"type": "rule", "rule": "gsm8k"}``). Hyperparameters map to
stage keys (``n_epochs`` → train.epochs, ``batch_size`` → micro batch / prompts per iteration,
``learning_rate_multiplier`` × the stage config's learning rate, dpo ``beta`` → dpo.beta); any other key is a 400
naming it. rayalign extensions beside them: ``max_steps``, ``lora_r``, ``checkpoint_every``; ``priority`` at the
top level (``extra_body``).
"""

from __future__ import annotations

import math
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.jobs_api.errors import APIError, bad_request
from app.registry.rollout import fine_tuned_model_id, parse_fine_tuned_model  # noqa: F401 - re-exported

# servable bases: the name Serve answers to → the model source the job trains on
BASES = {"tiny-llama": "tiny:llama", "smollm2-135m-instruct": "bundled:smollm2-135m-instruct"}
SOURCE_TO_BASE = {v: k for k, v in BASES.items()}
OPENAI_STATUS = {"queued": "queued", "preempted": "queued", "running": "running", "checkpointing": "running",
                 "evaluating": "running", "succeeded": "succeeded", "failed": "failed", "cancelled": "cancelled"}
METHOD_OF = {"supervised": "sft", "dpo": "dpo", "reinforcement": "ppo"}
TYPE_OF = {"sft": "supervised", "lora": "supervised", "qlora": "supervised", "cpt": "supervised", "dpo": "dpo",
           "ppo": "reinforcement", "reward": "reward"}
HYPER = {"supervised": {"n_epochs", "batch_size", "learning_rate_multiplier"},
         "dpo": {"n_epochs", "batch_size", "learning_rate_multiplier", "beta"},
         "reinforcement": {"n_epochs", "batch_size", "learning_rate_multiplier", "compute_multiplier", "eval_interval",
                           "eval_samples", "reasoning_effort"}}
EXTENSIONS = {"max_steps": (1, 100_000), "lora_r": (1, 256), "checkpoint_every": (1, 100_000)}
RULES = ("gsm8k", "exact_match", "gsm8k_answer_only")
PRIORITIES = ("high", "normal", "low")
_FILE_ID = re.compile(r"file-[0-9a-f]{20}")
# stage config whose learning rate the multiplier scales: (yaml, dotted key, schema default)
LR_SOURCE = {"sft": ("configs/tiny/sft_lora.yaml", "optim.lr", 2e-4), "dpo": ("configs/tiny/dpo_sigmoid.yaml", "optim.lr", 2e-4),
             "ppo": ("configs/tiny/ppo_grpo.yaml", "algo.lr", 1e-4)}
DEFAULT_PROMPTS_PER_ITERATION = 2  # configs/tiny/ppo_grpo.yaml run.prompts_per_iteration


class CreateFineTuningJob(BaseModel):
    """POST /v1/fine_tuning/jobs as the openai SDK sends it (unknown top-level fields: 400 naming them)."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(..., max_length=96)
    training_file: str = Field(..., max_length=64)
    validation_file: str | None = Field(None, max_length=64)
    method: dict[str, Any] | None = None
    hyperparameters: dict[str, Any] | None = None  # OpenAI's deprecated top-level form (supervised)
    suffix: str | None = Field(None, max_length=40, pattern=r"^[A-Za-z0-9_-]+$")
    seed: int | None = Field(None, ge=0, le=2**31 - 1)
    metadata: dict[str, str] | None = None
    integrations: list[dict[str, Any]] | None = None
    priority: Literal["high", "normal", "low"] = "normal"


def base_source(model: str) -> str:
    """The model source of a servable base name (``tiny-llama``) or source (``tiny:llama``); 400 otherwise."""
    if model in BASES:
        return BASES[model]
    if model in SOURCE_TO_BASE:
        return model
    raise APIError(400, f"model: {model!r} is not a servable base model (available: {', '.join(BASES)})",
                   param="model", code="model_not_available")


def _stage_lr(method: str) -> float:
    from app.config.loader import read_yaml
    from app.config.paths import REPO_ROOT

    path, key, default = LR_SOURCE[method]
    node: Any = read_yaml(REPO_ROOT / path)
    for part in key.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return float(node) if node is not None else default


def _int(value: Any, param: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise bad_request(param, f"must be an integer in {lo}..{hi} or 'auto'")
    return value


def _float(value: Any, param: str, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo < value <= hi:
        raise bad_request(param, f"must be a number in ({lo}, {hi}] or 'auto'")
    return float(value)


def _hyperparameters(kind: str, method: str, given: dict[str, Any], where: str, rows: int) -> dict[str, Any]:
    """OpenAI hyperparameters → the job's internal knobs (``app.pipeline.job_config`` keys)."""
    if not isinstance(given, dict):
        raise bad_request(where, "must be an object")
    out: dict[str, Any] = {}
    for key, value in given.items():
        param = f"{where}.{key}"
        if key not in HYPER[kind] and key not in EXTENSIONS:
            allowed = sorted(HYPER[kind] | set(EXTENSIONS))
            raise bad_request(param, f"unknown hyperparameter for method {kind!r} (known: {', '.join(allowed)})")
        if value == "auto" or value is None:
            continue
        if key in EXTENSIONS:
            out[key] = _int(value, param, *EXTENSIONS[key])
        elif key == "n_epochs":
            out["epochs"] = _int(value, param, 1, 50)
        elif key == "batch_size":
            out["batch_size"] = _int(value, param, 1, 256)
        elif key == "learning_rate_multiplier":
            out["learning_rate"] = _float(value, param, 0.0, 10.0) * _stage_lr(method)
        elif key == "beta":
            out["beta"] = _float(value, param, 0.0, 2.0)
        else:  # reinforcement knobs OpenAI defines that rayalign's GRPO has no equivalent for: refused, not ignored
            raise bad_request(param, f"not supported by rayalign's reinforcement (GRPO) method")
    if method == "ppo" and "epochs" in out:  # a GRPO "step" is one iteration over batch_size prompts
        per_iter = out.get("batch_size", DEFAULT_PROMPTS_PER_ITERATION)
        epochs = out.pop("epochs")
        out.setdefault("max_steps", max(1, math.ceil(rows * epochs / per_iter)))
    return out


def _grader(spec: dict[str, Any]) -> dict[str, Any]:
    """A reinforcement grader → the PPO stage's reward source (reward_rule / reward_model)."""
    grader = spec.get("grader")
    if not isinstance(grader, dict) or "type" not in grader:
        raise bad_request("method.reinforcement.grader", "a grader object with a 'type' is required")
    kind = grader["type"]
    if kind == "string_check":
        if grader.get("operation", "eq") != "eq":
            raise bad_request("method.reinforcement.grader.operation", "only 'eq' is supported")
        return {"reward_rule": "exact_match"}
    if kind == "rule":
        if grader.get("rule") not in RULES:
            raise bad_request("method.reinforcement.grader.rule", f"one of {', '.join(RULES)}")
        return {"reward_rule": grader["rule"]}
    if kind == "score_model":
        name = grader.get("model")
        if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9][a-z0-9._-]{0,63}", name):
            raise bad_request("method.reinforcement.grader.model", "must name one of your registered reward models")
        return {"reward_model": name}
    raise bad_request("method.reinforcement.grader.type",
                      f"{kind!r} is not supported (use string_check, score_model or rule)")


def internal_request(body: CreateFineTuningJob, rows: int) -> dict[str, Any]:
    """The stored job request: rayalign's internal form (what job_config reads) plus OpenAI's echo under 'openai'."""
    source = base_source(body.model)
    method_spec = body.method or {"type": "supervised"}
    kind = method_spec.get("type")
    if kind not in METHOD_OF:
        raise bad_request("method.type", "must be one of supervised, dpo, reinforcement")
    extra = set(method_spec) - {"type", kind}
    if extra:
        raise bad_request(f"method.{sorted(extra)[0]}", f"does not belong to method type {kind!r}")
    method = METHOD_OF[kind]
    inner = method_spec.get(kind) or {}
    if not isinstance(inner, dict):
        raise bad_request(f"method.{kind}", "must be an object")
    allowed_inner = {"hyperparameters"} | ({"grader"} if kind == "reinforcement" else set())
    for key in inner:
        if key not in allowed_inner:
            raise bad_request(f"method.{kind}.{key}", "unknown field")
    if body.hyperparameters and kind != "supervised":
        raise bad_request("hyperparameters", f"the top-level form is for supervised jobs; use method.{kind}.hyperparameters")
    given = {**(body.hyperparameters or {}), **(inner.get("hyperparameters") or {})}
    where = f"method.{kind}.hyperparameters" if inner.get("hyperparameters") else "hyperparameters"
    hyper = _hyperparameters(kind, method, given, where, rows)
    if body.seed is not None:
        hyper["seed"] = body.seed
    for file_key in ("training_file", "validation_file"):
        value = getattr(body, file_key)
        if value is not None and not _FILE_ID.fullmatch(value):
            raise bad_request(file_key, "must be a file id returned by POST /v1/files (file-<20 hex>)")
    if body.metadata is not None:
        if len(body.metadata) > 16 or any(len(k) > 64 or len(v) > 512 for k, v in body.metadata.items()):
            raise bad_request("metadata", "at most 16 pairs, keys ≤ 64 and values ≤ 512 characters")
    req: dict[str, Any] = {"base_model": source, "training_file": body.training_file,
                           "validation_file": body.validation_file, "method": method, "hyperparameters": hyper,
                           "eval_config": {"enabled": True} if body.validation_file else {}, "suffix": body.suffix,
                           "priority": body.priority}
    if kind == "reinforcement":
        req.update(_grader(inner))
    req["openai"] = {"model": body.model, "method": method_spec, "metadata": body.metadata, "seed": body.seed,
                     "integrations": [i.get("type", "?") for i in body.integrations or []]}
    return req
