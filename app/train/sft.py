"""The SFT / CPT train loop that every Ray Train worker runs (full, LoRA or QLoRA; DDP, FSDP2 or ZeRO).

Read top to bottom: validate config → seed → model → this rank's data → strategy → restore newest valid checkpoint
→ steps (forward, core loss, backward, step, report, checkpoint; SIGTERM → checkpoint and stop) → final adapter.
Returns a plain dict ``{"status": completed|preempted|failed, "step", "history", ...}`` (Result.return_value).
"""

from __future__ import annotations

import logging
import math
import os
import signal
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from app.config.sft import SFTConfig
from app.core.flops import mfu, train_flops_per_token
from app.core.losses import causal_lm_loss
from app.models.lora import load_trainable_model
from app.train.batches import PackedShard, collate_packed, shard_rows
from app.train.checkpoint import (
    TrainState, any_rank, collective_device, finalize_checkpoint, load_state, preemption_requested, restore_checkpoint,
    restore_rng_state, seed_everything, staged_checkpoint, write_rng_state,
)
from app.train.reporting import StepReporter, flatten_params
from app.train.strategy import make_strategy

log = logging.getLogger(__name__)


def _mean_over_ranks(values: list[float]) -> list[float]:
    t = torch.tensor(values, dtype=torch.float64, device=collective_device())
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t)
        t /= dist.get_world_size()
    return t.tolist()


def _model_flops_per_token(model: torch.nn.Module, seq_len: int) -> float:
    cfg = model.config
    n_all = sum(p.numel() for n, p in model.named_parameters() if "embed_tokens" not in n)
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return train_flops_per_token(n_all, cfg.num_hidden_layers, cfg.hidden_size, seq_len, n_trainable=n_train)


def save_final_weights(strat, cfg: SFTConfig, model_dir: str, folder: Path, rank: int) -> None:
    """Collective. Rank 0 writes ``folder/adapter`` (peft layout) or ``folder/model`` (full) with full tensors."""
    state = strat.full_trainable_state()
    if rank != 0:
        return
    module = strat.module
    if cfg.method == "full":
        module.save_pretrained(folder / "model", state_dict=state)
        from transformers import AutoTokenizer

        AutoTokenizer.from_pretrained(model_dir).save_pretrained(folder / "model")
    else:
        module.save_pretrained(folder / "adapter", state_dict=state)


def train_loop_per_worker(config: dict[str, Any]) -> dict[str, Any]:
    import ray.train
    import ray.train.torch
    from ray.train import Checkpoint

    cfg = SFTConfig.model_validate(config["cfg"])
    cfg_hash, run_name = config["config_hash"], config["run_name"]
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.set_num_threads(max(1, math.ceil(cfg.scaling.cpus_per_worker)))

    seed_everything(cfg.train.seed)  # identical initial weights (LoRA init) on every rank
    model = load_trainable_model(
        config["model_dir"], cfg.method, cfg.lora, cfg.quant, cfg.model.dtype, cfg.train.grad_checkpointing, cfg.train.seed
    )
    device = ray.train.torch.get_device()  # cuda:<local rank> on GPU workers (use_gpu), cpu otherwise
    if device.type == "cuda":
        model.to(device)  # weights (QLoRA: bitsandbytes quantizes on the move); DeepSpeed/FSDP2 expect it there too
    pad_id = model.config.pad_token_id if model.config.pad_token_id is not None else (model.config.eos_token_id or 0)
    if isinstance(pad_id, list):
        pad_id = pad_id[0]
    rows, total_rows = shard_rows(ray.train.get_dataset_shard("train").iter_rows(), rank, world)
    shard = PackedShard(rows, total_rows, world, cfg.train.micro_batch_size, cfg.train.grad_accum, cfg.train.seed)
    if shard.steps_per_epoch == 0:
        raise ValueError(
            f"{total_rows} packed rows cannot fill one step of {world} workers x {cfg.train.micro_batch_size} "
            f"x {cfg.train.grad_accum}; lower train.micro_batch_size/grad_accum or add data"
        )
    total_steps = min(cfg.train.max_steps or math.inf, shard.steps_per_epoch * cfg.train.epochs)
    flops_per_token = _model_flops_per_token(model, int(config.get("seq_len", 512)))
    strat = make_strategy(model, cfg, total_steps)
    seed_everything(cfg.train.seed + 1 + rank)  # per-rank dropout stream

    state = TrainState(config_hash=cfg_hash)
    with restore_checkpoint(ray.train.get_checkpoint(), config.get("run_dir")) as folder:
        if folder is not None:
            state = load_state(folder)
            if state.config_hash != cfg_hash:
                raise ValueError(f"run '{run_name}' was started with another config (hash {state.config_hash[:10]}); use a new run name")
            strat.load(folder, rank)
            restore_rng_state(folder, rank)
            state.resumed_from.append(state.step)
            state.status = "running"
    first_step = state.step
    reporter = None
    if rank == 0:
        params = {**flatten_params(config["cfg"]), "config_hash": cfg_hash, "dataset_id": config.get("dataset_id", ""),
                  "base_sha": config.get("base_sha", "")}
        reporter = StepReporter(run_name, config.get("tracking_uri"), cfg.tracking.experiment, params, state.tracking_run_id)
        state.tracking_run_id = reporter.run_id

    fault = cfg.fault
    strat.model.train()
    while state.step < total_steps:
        if state.batch_in_epoch >= shard.steps_per_epoch:
            state.epoch, state.batch_in_epoch = state.epoch + 1, 0
        step = state.step + 1
        wall_start = time.time()
        t0 = time.perf_counter()
        micro_batches = shard.step_rows(state.epoch, state.batch_in_epoch)
        losses, tokens = [], 0
        for i, rows_ in enumerate(micro_batches):
            batch = collate_packed(rows_, pad_id, cfg.train.objective)
            batch = {k: v.to(device) if k != "n_real_tokens" else v for k, v in batch.items()}
            with torch.autocast("cuda" if torch.cuda.is_available() else "cpu", dtype=torch.bfloat16, enabled=cfg.use_bf16):
                logits = strat.model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits
            loss_sum, n_tok = causal_lm_loss(logits, batch["labels"], batch["position_ids"])
            loss = loss_sum / n_tok.clamp(min=1)
            if fault.nan_at_step == step:
                loss = loss * float("nan")
            strat.backward(loss, last=i == len(micro_batches) - 1)
            losses.append(loss.item())
            tokens += int(batch["n_real_tokens"])
        if fault.sigterm_at_step == step and rank == fault.rank and first_step < step:
            os.kill(os.getpid(), signal.SIGTERM)  # drill: the handler only raises a flag; we stop at this boundary
        grad_norm, lr = strat.step()
        elapsed = time.perf_counter() - t0
        loss_mean, tok_per_s = _mean_over_ranks([sum(losses) / len(losses), tokens / elapsed])
        tok_per_s *= world  # mean per-rank rate x ranks = global rate
        if not (math.isfinite(loss_mean) and math.isfinite(grad_norm)):
            state.status = "failed"
            if reporter:
                reporter.close("failed")
            return {"status": "failed", "step": step, "reason": f"non-finite loss {loss_mean} / grad norm {grad_norm} at step {step}",
                    "history": state.history}
        state.step, state.batch_in_epoch = step, state.batch_in_epoch + 1
        metrics = {"step": step, "loss": loss_mean, "grad_norm": grad_norm, "lr": lr, "tokens_per_s": tok_per_s,
                   "mfu": mfu(flops_per_token, tok_per_s, cfg.output.peak_flops * world), "epoch": state.epoch,
                   "tokens": tokens * world, "wall_start": wall_start}
        state.history.append(metrics)
        if reporter:
            reporter.log(metrics, step)

        preempted = any_rank(preemption_requested())
        done = step == total_steps
        state.status = "preempted" if preempted and not done else "completed" if done else "running"
        if preempted or done or step % cfg.checkpoint.every_steps == 0:
            with staged_checkpoint(rank, step) as folder:
                strat.save(folder, rank)
                write_rng_state(folder, rank)
                if done:
                    save_final_weights(strat, cfg, config["model_dir"], folder, rank)
                finalize_checkpoint(folder, state, rank)
                ray.train.report({**metrics, "status": state.status}, checkpoint=Checkpoint.from_directory(str(folder)))
        elif step % cfg.train.log_every == 0:
            ray.train.report({**metrics, "status": state.status})
        if fault.kill_at_step == step and rank == fault.rank and first_step < step:
            time.sleep(3.0)  # let the controller register the step's checkpoint first
            os._exit(1)  # drill: abrupt worker death; FailureConfig restarts from the newest checkpoint
        if preempted:
            break
    if reporter:
        reporter.close(state.status)
    return {"status": state.status, "step": state.step, "history": state.history, "resumed_from": state.resumed_from,
            "tracking_run_id": state.tracking_run_id, "total_steps": total_steps}
