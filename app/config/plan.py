"""Schema for `rayalign plan`: which model, which training method, which GPUs may be used."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from app.config.base import StrictModel
from app.config.common import ModelSpec


# The GPU types a plan may name: the keys of app.plan.gpus.CATALOG (the config floor cannot import the planner;
# tests/config/test_plan_gpu_types.py keeps the two lists equal).
GPU_TYPES: tuple[str, ...] = ("L4", "A10G", "L40S", "A100", "A100-80GB", "H100", "H200")


class PlanLoRA(StrictModel):
    """The adapter whose trainable parameters peft counts on the meta-device model."""

    r: int = Field(8, ge=1, description="LoRA rank")
    alpha: int = Field(16, ge=1, description="LoRA alpha (does not change memory; kept so the block matches training configs)")
    target_modules: str | list[str] = Field(
        "all-linear", description="peft target_modules: 'all-linear' (every linear layer but the LM head) or module names"
    )


class PlanHardware(StrictModel):
    """The GPUs the planner may choose from and how much of each it may fill."""

    gpu_types: list[str] = Field(
        ["L4", "A10G", "L40S", "A100", "A100-80GB", "H100", "H200"],
        min_length=1,
        description="candidate SkyPilot accelerator names (see app/plan/gpus.py for the catalog)",
    )
    gpu_count: int | None = Field(None, ge=1, description="fix the GPU count (None: the cheapest count that fits)")
    max_gpus: int = Field(64, ge=1, description="largest total GPU count to consider")
    gpus_per_node: int = Field(8, ge=1, le=16, description="most GPUs on one node; larger counts use several nodes")
    usable_fraction: float = Field(0.9, gt=0.1, le=1.0, description="fraction of GPU memory a plan may fill (fragmentation headroom)")
    overhead_gib: float = Field(1.5, ge=0, description="per-GPU fixed overhead: CUDA context, NCCL and allocator buffers (GiB)")
    objective: Literal["hourly_price", "price_per_flop"] = Field(
        "hourly_price", description="rank fitting options by fleet USD/hour, or by USD per peak bf16 FLOP (faster GPUs win)"
    )
    use_spot: bool = Field(True, description="emit spot resources (with on-demand fallback in the SkyPilot block)")
    clouds: list[str] = Field(["aws", "gcp"], description="clouds for the SkyPilot block: spot on each in this order, then on-demand (empty: any enabled cloud)")

    @field_validator("gpu_types")
    @classmethod
    def _known_gpus(cls, names: list[str]) -> list[str]:
        unknown = [n for n in names if n not in GPU_TYPES]
        if unknown:
            raise ValueError(f"unknown GPU type(s) {unknown}; known: {', '.join(GPU_TYPES)}")
        return names


class PlanConfig(StrictModel):
    """Estimate per-GPU training memory for a model and method, then pick GPU type/count and ZeRO stage."""

    model: ModelSpec = Field(default_factory=ModelSpec, description="model whose config.json is read (weights are never loaded)")
    hf_config: dict[str, Any] | None = Field(
        None, description="inline Hugging Face config (needs model_type); when set it is used instead of model.source"
    )
    method: Literal["full", "lora", "qlora"] = Field("lora", description="full fine-tuning, LoRA on a bf16 base, or QLoRA on an NF4 base")
    lora: PlanLoRA = Field(default_factory=PlanLoRA, description="adapter settings for lora/qlora")
    parallelism: Literal["auto", "ddp", "zero1", "zero2", "zero3", "fsdp"] = Field(
        "auto", description="data-parallel strategy; 'auto' picks the lowest ZeRO stage that fits (fsdp = full sharding = ZeRO-3)"
    )
    offload: Literal["none", "optimizer", "optimizer+params"] = Field(
        "none", description="ZeRO-Offload of optimizer state (and, with ZeRO-3, parameters) to CPU memory"
    )
    seq_len: int = Field(2048, ge=1, description="training sequence length (tokens per packed row)")
    micro_batch: int = Field(1, ge=1, description="rows per GPU per forward/backward")
    grad_checkpointing: bool = Field(True, description="recompute each layer in backward, keeping only layer inputs")
    flash_attention: bool = Field(True, description="memory-efficient attention (no s x s score matrix kept)")
    hardware: PlanHardware = Field(default_factory=PlanHardware, description="GPU candidates and limits")
