"""Reward-model training loop (Ray Train worker): base LM + scalar head, Bradley–Terry loss on (chosen, rejected).

    r_c, r_r = PairScorer(packed chosen ++ rejected)       one padding-free forward of all 2B sequences
    loss     = −log σ(r_c − r_r)  [+ coef·mean((r_c + r_r)²)]       (app/core/preference_losses.py)
    metrics  = loss, pair accuracy (r_c > r_r), margin r_c − r_r, scores; held-out eval_before/* and eval/*

Read top to bottom: config → session → pairs → model → strategy (ddp | fsdp2 | deepspeed) → resume → eval before →
steps → eval after → final model (peft SEQ_CLS adapter incl. head, or the full classifier; tokenizer; lineage) in
the last checkpoint, which the driver copies out; ``load_reward_model(dir)`` reads it (PPO reward actor, eval gates).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import torch

from app.config.reward import RewardConfig, RewardSpec
from app.core.logprobs import PackedSequences
from app.core.preference_losses import PreferenceStats, bradley_terry_loss, pair_stats
from app.train.output import write_output
from app.train.pairs import PairShard, evaluate_pairs, load_pair_splits, n_rows, pack_pairs, pair_metrics, pair_step, pair_tokens
from app.train.session import WorkerSession, model_flops_per_token
from app.train.strategy import large_model_init, make_strategy


class PairScorer(torch.nn.Module):
    """``forward(packed) → [n_seqs]`` scalar rewards (head at each sequence's last token).

    The module DDP / FSDP2 / DeepSpeed wrap: the scoring calls the backbone directly (packed, head only at the last
    tokens), so the wrapper's forward must be the one that runs for their hooks (gradient sync, all-gathers) to fire.
    """

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, packed: PackedSequences) -> torch.Tensor:
        from app.models.reward_head import score_packed

        return score_packed(self.model, packed)


def reward_loss(scores: torch.Tensor, n_pairs: int, spec: RewardSpec) -> tuple[torch.Tensor, PreferenceStats]:
    """Bradley–Terry loss (+ optional centring) of [2B] scores laid out chosen then rejected; and the batch's stats."""
    chosen, rejected = scores[:n_pairs], scores[n_pairs:]
    loss = bradley_terry_loss(chosen, rejected)
    if spec.center_rewards_coef:
        loss = loss + spec.center_rewards_coef * ((chosen + rejected) ** 2).mean()
    return loss, pair_stats(loss, chosen, rejected)


def reward_loop_per_worker(loop_config: dict[str, Any]) -> dict[str, Any]:
    """Ray Train entry: re-validate the config (plain dict across the process boundary) and train."""
    from app.models.loader import load_tokenizer
    from app.models.reward_head import build_reward_model

    cfg = RewardConfig.model_validate(loop_config["cfg"])
    session = WorkerSession(loop_config, cfg)
    rank, world, device = session.rank, session.world, session.device
    t = cfg.train
    train_rows, held_out = load_pair_splits(cfg.data, [], t.seed)
    shard = PairShard(train_rows, rank, world, t.micro_batch_size, t.grad_accum, t.seed)
    if shard.steps_per_epoch == 0:
        raise ValueError(f"{n_rows(train_rows)} training pairs cannot fill one step of {world} workers x "
                         f"{t.micro_batch_size} pairs x {t.grad_accum}; lower train.micro_batch_size/grad_accum or add data")
    total_steps = min(t.max_steps or math.inf, shard.steps_per_epoch * t.epochs)

    tokenizer = load_tokenizer(loop_config["model_dir"])
    zero_init = large_model_init(cfg)  # noqa: F841  (ZeRO-3: weights are partitioned as they are created)
    model = build_reward_model(loop_config["model_dir"], cfg.lora if cfg.method == "lora" else None, tokenizer.pad_token_id, cfg.model.dtype)
    if t.grad_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    flops_per_token = model_flops_per_token(model, pair_tokens(train_rows) / (2 * n_rows(train_rows)))
    strat = make_strategy(PairScorer(model).to(device), cfg, total_steps)
    resumed = session.restore(strat)
    session.open_reporter()
    state = session.state

    def score_loss(rows: dict[str, list]) -> tuple[torch.Tensor, PreferenceStats]:
        n = len(rows["chosen_input_ids"])
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.use_bf16):
            scores = strat.model(pack_pairs(rows, with_labels=False).to(device))
        return reward_loss(scores.float(), n, cfg.reward)

    if not resumed:  # the "before training" numbers; ASHA and the summary read them
        session.record_eval(evaluate_pairs(score_loss, strat.model, held_out, t.micro_batch_size, rank, world, "scores"), before=True)

    strat.model.train()
    while state.step < total_steps:
        step, wall_start, t0 = session.begin_step(shard.steps_per_epoch), time.time(), time.perf_counter()
        stats, tokens = pair_step(strat, shard.step_rows(state.epoch, state.batch_in_epoch), score_loss, cfg.fault.nan_at_step == step)
        session.sigterm_drill(step)
        grad_norm, lr = strat.step()
        *means, tok_s = session.mean_over_ranks(stats + [tokens / (time.perf_counter() - t0)])
        if not (math.isfinite(means[0]) and math.isfinite(grad_norm)):
            return session.fail(f"non-finite loss {means[0]} / grad norm {grad_norm} at step {step}")
        state.step, state.batch_in_epoch = step, state.batch_in_epoch + 1
        done = step == total_steps
        if done or (t.eval_every and step % t.eval_every == 0):
            session.record_eval(evaluate_pairs(score_loss, strat.model, held_out, t.micro_batch_size, rank, world, "scores"))
        metrics = {**pair_metrics(step, means, "scores"), "grad_norm": grad_norm, "lr": lr, "tokens_per_s": tok_s * world,
                   "mfu": session.mfu(flops_per_token, tok_s * world), "epoch": state.epoch, "tokens": tokens * world,
                   "wall_start": wall_start, **state.latest_eval, **(state.eval_before if done else {})}

        def write_final(folder: Path) -> None:
            write_output(strat, cfg, "reward", folder, loop_config, metrics, rank, tokenizer)

        if session.end_step(metrics, strat, done, write_final):
            break
    return session.finish(state.history[-1] if state.history else None)
