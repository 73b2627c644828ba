"""Distribution strategies behind one small interface, so a train loop reads the same for DDP, FSDP2 and ZeRO.

    strat = make_strategy(cfg.strategy.kind, model, optim_spec, total_steps, grad_accum, ...)
    for micro, batch in enumerate(micro_batches):
        loss = loss_fn(strat.model(**inputs).logits, ...)
        strat.backward(loss, last=micro == len(micro_batches) - 1)
    grad_norm, lr = strat.step()
    strat.save(folder, rank) / strat.load(folder, rank)      # rank-unique files; collective for fsdp2/deepspeed
    strat.full_trainable_state()                               # collective; full tensors on every rank

- ddp: torch DistributedDataParallel (gloo on CPU), ``no_sync`` during accumulation; rank 0 saves weights
  (LoRA: adapter tensors only), optimizer and scheduler.
- fsdp2: ``fully_shard`` per decoder layer + root, driven directly (accelerate turns FSDP into DDP on CPU);
  checkpoints are sharded with torch.distributed.checkpoint (each rank writes its shard, rank 0 the metadata).
- deepspeed: ZeRO stage 1/2/3 with a config generated from the schema (``deepspeed_config``); DeepSpeed's own
  sharded checkpoint format, frozen base weights excluded for LoRA.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist

from app.config.common import OptimSpec, TrainingConfig
from app.models.lean_imports import import_deepspeed


def build_optimizer(params: list[torch.nn.Parameter], spec: OptimSpec) -> torch.optim.Optimizer:
    """AdamW (torch) or 8-bit AdamW (bitsandbytes, Dettmers et al. 2022)."""
    if spec.optimizer == "adamw_8bit":
        import bitsandbytes as bnb

        return bnb.optim.AdamW8bit(params, lr=spec.lr, betas=spec.betas, weight_decay=spec.weight_decay)
    return torch.optim.AdamW(params, lr=spec.lr, betas=spec.betas, weight_decay=spec.weight_decay)


def lr_factor(step: int, warmup: int, total: int, schedule: str) -> float:
    """Multiplier on the peak lr at ``step``: linear warmup over ``warmup`` steps, then cosine/linear decay to 0."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.5 * (1.0 + math.cos(math.pi * progress)) if schedule == "cosine" else 1.0 - progress


def build_scheduler(optimizer: torch.optim.Optimizer, spec: OptimSpec, total_steps: int):
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, spec.warmup_steps, total_steps, spec.schedule)
    )


def deepspeed_config(cfg: TrainingConfig) -> dict[str, Any]:
    """The DeepSpeed JSON config implied by a training config (any method) (batch arithmetic, ZeRO stage, precision, clipping)."""
    zero: dict[str, Any] = {"stage": cfg.strategy.zero_stage, "overlap_comm": False, "contiguous_gradients": True}
    if cfg.strategy.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": cfg.scaling.use_gpu}
    if cfg.strategy.zero_stage == 3:
        zero["stage3_gather_16bit_weights_on_model_save"] = True
    return {
        "train_micro_batch_size_per_gpu": cfg.train.micro_batch_size,
        "gradient_accumulation_steps": cfg.train.grad_accum,
        "train_batch_size": cfg.train.micro_batch_size * cfg.train.grad_accum * cfg.scaling.num_workers,
        "gradient_clipping": cfg.optim.max_grad_norm,
        "zero_optimization": zero,
        "bf16": {"enabled": cfg.use_bf16},
        "zero_allow_untested_optimizer": True,
        "zero_force_ds_cpu_optimizer": False,
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class DDPStrategy:
    """Data parallel with replicated weights (a plain module when there is one worker)."""

    def __init__(self, model: torch.nn.Module, cfg: TrainingConfig, total_steps: int):
        self.module = model
        self.cfg = cfg
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.names = [n for n, p in model.named_parameters() if p.requires_grad]
        self.model = torch.nn.parallel.DistributedDataParallel(model) if _distributed() else model
        self.optimizer = build_optimizer(self.params, cfg.optim)
        self.scheduler = build_scheduler(self.optimizer, cfg.optim, total_steps)
        self.grad_accum = cfg.train.grad_accum

    def backward(self, loss: torch.Tensor, last: bool) -> None:
        if isinstance(self.model, torch.nn.parallel.DistributedDataParallel) and not last:
            with self.model.no_sync():
                (loss / self.grad_accum).backward()
        else:
            (loss / self.grad_accum).backward()

    def _clip(self) -> float:
        max_norm = self.cfg.optim.max_grad_norm or float("inf")
        norm = torch.nn.utils.clip_grad_norm_(self.params, max_norm)
        return float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)

    def step(self) -> tuple[float, float]:
        """Clip, optimizer step, scheduler step; returns (grad norm before clipping, lr used)."""
        lr = self.optimizer.param_groups[0]["lr"]
        norm = self._clip()
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return norm, lr

    def _weights(self) -> dict[str, torch.Tensor]:
        if self.cfg.method == "full":
            return self.module.state_dict()
        return {n: p.detach() for n, p in zip(self.names, self.params)}

    def save(self, folder: Path, rank: int) -> None:
        if rank == 0:
            torch.save(self._weights(), folder / "model.pt")
            torch.save(self.optimizer.state_dict(), folder / "optimizer.pt")
            torch.save(self.scheduler.state_dict(), folder / "scheduler.pt")

    def load(self, folder: Path, rank: int) -> None:
        weights = torch.load(folder / "model.pt", weights_only=True)
        missing, _ = self.module.load_state_dict(weights, strict=False)
        lost = [n for n in self.names if n in missing]
        if lost:
            raise RuntimeError(f"{folder}: checkpoint lacks trainable tensors {lost[:3]}")
        self.optimizer.load_state_dict(torch.load(folder / "optimizer.pt", weights_only=True))
        self.scheduler.load_state_dict(torch.load(folder / "scheduler.pt", weights_only=True))

    def full_trainable_state(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu().clone() for k, v in self._weights().items()}


class FSDP2Strategy(DDPStrategy):
    """Fully sharded data parallel (torch ``fully_shard``), checkpointed with torch.distributed.checkpoint."""

    def __init__(self, model: torch.nn.Module, cfg: TrainingConfig, total_steps: int, fill: Callable[[], None] | None = None):
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        device = "cuda" if torch.cuda.is_available() else "cpu"
        mesh = init_device_mesh(device, (dist.get_world_size(),))
        reshard = cfg.strategy.fsdp_reshard_after_forward
        for module in model.modules():
            if type(module).__name__.endswith("DecoderLayer"):
                fully_shard(module, mesh=mesh, reshard_after_forward=reshard)
        fully_shard(model, mesh=mesh, reshard_after_forward=reshard)
        if fill is not None:  # built on the meta device (app/models/meta_init.py): storage for the local shards only
            model.to_empty(device=torch.device(device, torch.cuda.current_device()) if device == "cuda" else device)
            fill()
        self.module = self.model = model
        self.cfg = cfg
        self.names = [n for n, p in model.named_parameters() if p.requires_grad]
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = build_optimizer(self.params, cfg.optim)
        self.scheduler = build_scheduler(self.optimizer, cfg.optim, total_steps)
        self.grad_accum = cfg.train.grad_accum

    def backward(self, loss: torch.Tensor, last: bool) -> None:
        self.model.set_requires_gradient_sync(last)  # reduce-scatter once per optimizer step
        (loss / self.grad_accum).backward()

    def _state(self) -> dict[str, Any]:
        from torch.distributed.checkpoint.state_dict import get_state_dict

        model_sd, optim_sd = get_state_dict(self.model, self.optimizer)
        if self.cfg.method != "full":
            keep = set(self.names)
            model_sd = {k: v for k, v in model_sd.items() if k in keep}
        return {"model": model_sd, "optim": optim_sd}

    def save(self, folder: Path, rank: int) -> None:
        import torch.distributed.checkpoint as dcp

        dcp.save(self._state(), checkpoint_id=str(folder / "dcp"))
        if rank == 0:
            torch.save(self.scheduler.state_dict(), folder / "scheduler.pt")

    def load(self, folder: Path, rank: int) -> None:
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

        state = self._state()
        dcp.load(state, checkpoint_id=str(folder / "dcp"))
        set_state_dict(
            self.model, self.optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"],
            options=StateDictOptions(strict=False),
        )
        self.scheduler.load_state_dict(torch.load(folder / "scheduler.pt", weights_only=True))

    def full_trainable_state(self) -> dict[str, torch.Tensor]:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        full = get_model_state_dict(self.model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        if self.cfg.method == "full":
            return full
        keep = set(self.names)
        return {k: v for k, v in full.items() if k in keep}


class DeepSpeedStrategy:
    """DeepSpeed ZeRO 1/2/3; the engine owns accumulation, clipping and the lr schedule."""

    def __init__(self, model: torch.nn.Module, cfg: TrainingConfig, total_steps: int):
        deepspeed = import_deepspeed()
        self.cfg = cfg
        self.names = [n for n, p in model.named_parameters() if p.requires_grad]
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = build_optimizer(params, cfg.optim)
        scheduler = build_scheduler(optimizer, cfg.optim, total_steps)
        self.model, self.optimizer, _, self.scheduler = deepspeed.initialize(
            model=model, optimizer=optimizer, lr_scheduler=scheduler, config=deepspeed_config(cfg), dist_init_required=False
        )
        self.module = self.model.module

    def backward(self, loss: torch.Tensor, last: bool) -> None:
        self.model.backward(loss)  # the engine scales by 1/grad_accum itself
        if not last:
            self.model.step()  # not a boundary: DeepSpeed only accumulates

    def step(self) -> tuple[float, float]:
        lr = self.scheduler.get_last_lr()[0]
        self.model.step()
        norm = self.model.get_global_grad_norm()
        return float(norm if norm is not None else float("nan")), lr

    def save(self, folder: Path, rank: int) -> None:
        # DeepSpeed assumes a shared filesystem (rank 0 makes the folder); every rank stages into its own temp dir
        (folder / "ds" / "state").mkdir(parents=True, exist_ok=True)
        self.model.save_checkpoint(str(folder / "ds"), tag="state", exclude_frozen_parameters=self.cfg.method != "full")

    def load(self, folder: Path, rank: int) -> None:
        path, _ = self.model.load_checkpoint(
            str(folder / "ds"), tag="state", load_module_strict=self.cfg.method == "full",
            load_optimizer_states=True, load_lr_scheduler_states=True,
        )
        if path is None:
            raise RuntimeError(f"{folder}: DeepSpeed could not load its checkpoint")

    def full_trainable_state(self) -> dict[str, torch.Tensor]:
        deepspeed = import_deepspeed()
        named = dict(self.module.named_parameters())
        wanted = list(named) if self.cfg.method == "full" else self.names
        with deepspeed.zero.GatheredParameters([named[n] for n in wanted], modifier_rank=None,
                                               enabled=self.cfg.strategy.zero_stage == 3):
            return {n: named[n].detach().cpu().clone() for n in wanted}


def _zero3(cfg: TrainingConfig) -> bool:
    return cfg.strategy.kind == "deepspeed" and cfg.strategy.zero_stage == 3 and _distributed()


def large_model_init(cfg: TrainingConfig):
    """Keep the returned object alive while building the model: under DeepSpeed ZeRO-3 with several workers it is
    transformers' ``HfDeepSpeedConfig``, which makes ``from_pretrained`` / ``from_config`` create every weight inside
    ``deepspeed.zero.Init`` (partitioned as it is made; the reward model and adapter continuation load this way) and
    tells transformers ZeRO-3 is on; None otherwise. ``load_model_for_strategy`` builds full / fresh-LoRA models
    partitioned itself (``builds_partitioned``)."""
    if not _zero3(cfg):
        return None
    from transformers.integrations import HfDeepSpeedConfig

    deepspeed = import_deepspeed()

    deepspeed.init_distributed(dist_backend=dist.get_backend())  # wraps the existing group: zero.Init sees the real world size
    return HfDeepSpeedConfig(deepspeed_config(cfg))


def builds_on_meta(cfg: TrainingConfig, adapter: str | None = None) -> bool:
    """FSDP2 over several workers, full or fresh LoRA: the base is built on the meta device and each rank loads only
    its own shards (app/models/meta_init.py). QLoRA is refused with FSDP2 by the config; continuing a saved adapter
    and the reward model (its fresh score head) still load the base in full before ``fully_shard``."""
    return cfg.strategy.kind == "fsdp2" and _distributed() and cfg.method in ("full", "lora") and adapter is None


def builds_partitioned(cfg: TrainingConfig, adapter: str | None = None) -> bool:
    """DeepSpeed ZeRO-3 over several workers, full or fresh LoRA: every weight is created as this rank's partition
    and filled from the checkpoint (app/models/meta_init.py ``partitioned_trainable_model``); no rank holds a full
    tensor, where ``from_pretrained`` under ZeRO-3 gathers each module in full to load it."""
    return _zero3(cfg) and cfg.method in ("full", "lora") and adapter is None


def load_model_for_strategy(model_dir: str | Path, cfg: TrainingConfig, adapter: str | None = None):
    """(trainable causal LM, fill): built on the meta device with the ``fill`` that loads each rank's shards when
    ``builds_on_meta(cfg)``; built as ZeRO-3 partitions, already filled, when ``builds_partitioned(cfg)`` (``fill``
    None); else loaded in full on every rank (``fill`` None; under ZeRO-3 inside zero.Init when ``large_model_init``
    is alive)."""
    t = cfg.train
    if builds_partitioned(cfg, adapter):
        from app.models.meta_init import partitioned_trainable_model

        import_deepspeed().init_distributed(dist_backend=dist.get_backend())  # no-op when large_model_init ran
        return partitioned_trainable_model(model_dir, cfg.method, cfg.lora, deepspeed_config(cfg),
                                           t.grad_checkpointing, t.seed), None
    if builds_on_meta(cfg, adapter):
        from app.models.meta_init import meta_trainable_model

        return meta_trainable_model(model_dir, cfg.method, cfg.lora, cfg.model.dtype, t.grad_checkpointing, t.seed)
    from app.models.lora import load_trainable_model

    return load_trainable_model(model_dir, cfg.method, cfg.lora, cfg.quant, cfg.model.dtype, t.grad_checkpointing, t.seed,
                                adapter=adapter), None


def make_strategy(model: torch.nn.Module, cfg: TrainingConfig, total_steps: int, fill: Callable[[], None] | None = None):
    """The strategy for ``cfg.strategy``; ``fill``: the model is on the meta device (``builds_on_meta``) and this
    loads each rank's shards once they are laid out (FSDP2 only)."""
    kind = cfg.strategy.kind
    if kind == "fsdp2" and not _distributed():
        kind = "ddp"  # one worker: nothing to shard
    if fill is not None:
        if kind != "fsdp2":
            raise ValueError(f"a meta-device model needs strategy.kind fsdp2 over several workers, not {kind}")
        return FSDP2Strategy(model, cfg, total_steps, fill)
    cls = {"ddp": DDPStrategy, "fsdp2": FSDP2Strategy, "deepspeed": DeepSpeedStrategy}[kind]
    return cls(model, cfg, total_steps)
