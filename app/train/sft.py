"""The SFT / CPT train loop that every Ray Train worker runs (full, LoRA or QLoRA; DDP, FSDP2 or ZeRO).

Read top to bottom: validate config → session (seed, device, peak FLOP/s) → model → this rank's data → strategy →
restore newest valid checkpoint → steps (forward, core loss, backward, step; the session reports, checkpoints and
stops on SIGTERM) → final adapter/model in the last checkpoint.
Returns a plain dict ``{"status": completed|preempted|failed, "step", "history", ...}`` (Result.return_value).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import torch

from app.config.sft import SFTConfig
from app.core.losses import causal_lm_loss
from app.train.batches import ParquetRows, StreamingShard, collate_packed
from app.train.output import write_output
from app.train.session import WorkerSession, model_flops_per_token
from app.train.strategy import large_model_init, load_model_for_strategy, make_strategy


def pad_token_id(model) -> int:
    pad_id = model.config.pad_token_id if model.config.pad_token_id is not None else (model.config.eos_token_id or 0)
    return pad_id[0] if isinstance(pad_id, list) else pad_id


def train_loop_per_worker(config: dict[str, Any]) -> dict[str, Any]:
    cfg = SFTConfig.model_validate(config["cfg"])
    session = WorkerSession(config, cfg)  # seeds: identical initial weights (LoRA init) on every rank
    rank, world, device = session.rank, session.world, session.device
    t = cfg.train
    zero_init = large_model_init(cfg)  # noqa: F841  (ZeRO-3: weights are partitioned as they are created)
    model, fill = load_model_for_strategy(config["model_dir"], cfg)  # FSDP2: on the meta device, shards filled later
    pad_id = pad_token_id(model)
    # this rank's rows stream from the split's Parquet files through a seeded shuffle buffer (O(buffer) rows held)
    shard = StreamingShard(ParquetRows(config["train_split_dir"]), rank, world, t.micro_batch_size, t.grad_accum, t.seed)
    if shard.steps_per_epoch == 0:
        raise ValueError(
            f"{shard.total_rows} packed rows cannot fill one step of {world} workers x {t.micro_batch_size} "
            f"x {t.grad_accum}; lower train.micro_batch_size/grad_accum or add data"
        )
    total_steps = min(t.max_steps or math.inf, shard.steps_per_epoch * t.epochs)
    flops_per_token = model_flops_per_token(model, int(config.get("seq_len", 512)))
    strat = make_strategy(model if fill else model.to(device), cfg, total_steps, fill)
    session.restore(strat)
    session.open_reporter()
    state = session.state

    strat.model.train()
    while state.step < total_steps:
        step, wall_start, t0 = session.begin_step(shard.steps_per_epoch), time.time(), time.perf_counter()
        micro_batches = shard.step_rows(state.epoch, state.batch_in_epoch)
        losses, tokens = [], 0
        for i, rows_ in enumerate(micro_batches):
            batch = {k: v.to(device) for k, v in collate_packed(rows_, pad_id, t.objective).items()}
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.use_bf16):
                logits = strat.model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits
            loss_sum, n_tok = causal_lm_loss(logits, batch["labels"], batch["position_ids"])
            loss = loss_sum / n_tok.clamp(min=1)
            if cfg.fault.nan_at_step == step:
                loss = loss * float("nan")
            strat.backward(loss, last=i == len(micro_batches) - 1)
            losses.append(loss.item())
            tokens += int(batch["n_real_tokens"])
        session.sigterm_drill(step)
        grad_norm, lr = strat.step()
        loss_mean, tok_per_s = session.mean_over_ranks([sum(losses) / len(losses), tokens / (time.perf_counter() - t0)])
        tok_per_s *= world  # mean per-rank rate x ranks = global rate
        if not (math.isfinite(loss_mean) and math.isfinite(grad_norm)):
            return session.fail(f"non-finite loss {loss_mean} / grad norm {grad_norm} at step {step}")
        state.step, state.batch_in_epoch = step, state.batch_in_epoch + 1
        metrics = {"step": step, "loss": loss_mean, "grad_norm": grad_norm, "lr": lr, "tokens_per_s": tok_per_s,
                   "mfu": session.mfu(flops_per_token, tok_per_s), "epoch": state.epoch, "tokens": tokens * world,
                   "wall_start": wall_start}

        def write_final(folder: Path) -> None:
            tokenizer = None
            if cfg.method == "full":
                from app.models.loader import load_tokenizer

                tokenizer = load_tokenizer(config["model_dir"])
            write_output(strat, cfg, "sft", folder, config, metrics, rank, tokenizer)

        if session.end_step(metrics, strat, step == total_steps, write_final):
            break
    return session.finish()
