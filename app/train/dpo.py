"""DPO-family training loop (Ray Train worker) against reference log-probs precomputed into the artifact.

One model in memory: the reference log-probs were computed once by app/data/reference_logprobs.py, so a step is
one packed forward + backward of the policy over the batch's 2B sequences (LM head only at response tokens):

    π = PolicyLogprobs(packed chosen ++ rejected)                  (app/core/logprobs.py)
    loss, r_c, r_r = preference_objective(π, batch, cfg.dpo)      the ONE call that picks the loss (dpo.loss_type)
    metrics: loss, rewards/chosen = mean r_c, rewards/rejected, accuracy (r_c > r_r), margin; eval_before/*, eval/*

SimPO and ORPO are reference-free (no reference columns are read or precomputed). KTO trains on an 'unpaired'
artifact: a step is a no-grad forward over the rows' mismatched KL sequences (for the reference point z0, averaged
over ranks) and the forward + backward over the rows themselves (:func:`unpaired_objective`).

Read top to bottom: config → session → pairs → policy (fresh LoRA/QLoRA/full, or the SFT adapter that is also
the reference) → strategy (ddp | fsdp2 | deepspeed) → resume → eval before → steps → eval after → final adapter.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import torch

from app.config.dpo import DPOConfig, DPOSpec
from app.core.logprobs import PackedSequences, concat_for_packed_forward, packed_sequence_logprobs
from app.core.preference_losses import (
    LOGPROB_TIE_TOL,
    PreferenceStats,
    dpo_loss,
    kto_kl_estimate,
    kto_loss,
    kto_stats,
    orpo_loss,
    pair_stats,
    simpo_loss,
)
from app.data.reference_logprobs import COLUMNS as REF_COLUMNS
from app.data.reference_logprobs import KL_COLUMNS, KTO_REF_COLUMNS
from app.train.output import write_output
from app.train.pairs import PairShard, evaluate_pairs, load_pair_splits, n_rows, pack_pairs, pair_metrics, pair_step, pair_tokens
from app.train.session import WorkerSession, model_flops_per_token
from app.train.strategy import large_model_init, load_model_for_strategy, make_strategy


class PolicyLogprobs(torch.nn.Module):
    """``forward(packed) → [n_seqs]`` log π(y|x) (float64 sums of the response tokens' log-probs).

    The module DDP / FSDP2 / DeepSpeed wrap: the log-probs call the decoder and the LM head directly (padding-free,
    head only at label positions), so this forward must be the one that runs for their hooks to fire.
    """

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, packed: PackedSequences) -> torch.Tensor:
        return packed_sequence_logprobs(self.model, packed)


def response_token_counts(labels: list[list[int]]) -> torch.Tensor:
    """[B] number of scored tokens per sequence (labels != -100 after the one-token shift), for per-token means."""
    return torch.tensor([max(1, sum(1 for y in seq[1:] if y != -100)) for seq in labels], dtype=torch.float64)


def preference_objective(logps: torch.Tensor, rows: dict[str, list], spec: DPOSpec) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss, rewards_c [B], rewards_r [B]) of policy log-probs ``logps`` [2B] (chosen then rejected) for ``spec.loss_type``.

    The one place a loss family is chosen; a new ``loss_type`` adds a branch here (its math in
    app/core/preference_losses.py). sigmoid / ipo compare against the precomputed reference columns; IPO on per-token
    mean log-probs (Azar et al. 2023, as in the paper's implementation).
    """
    n = len(rows["chosen_input_ids"])
    policy_c, policy_r = logps[:n].double(), logps[n:].double()
    if spec.loss_type in ("simpo", "orpo"):  # reference-free, on per-token means (the counts go to the core loss)
        count_c = response_token_counts(rows["chosen_labels"]).to(logps.device)
        count_r = response_token_counts(rows["rejected_labels"]).to(logps.device)
        if spec.loss_type == "simpo":
            gamma = 0.5 if spec.simpo_gamma is None else spec.simpo_gamma
            return simpo_loss(policy_c, policy_r, count_c, count_r, spec.beta, gamma, spec.label_smoothing)
        return orpo_loss(policy_c, policy_r, count_c, count_r, lam=spec.beta)
    ref_c = torch.tensor(rows["ref_chosen_logp"], dtype=torch.float64, device=logps.device)
    ref_r = torch.tensor(rows["ref_rejected_logp"], dtype=torch.float64, device=logps.device)
    if spec.loss_type == "ipo":
        count_c = response_token_counts(rows["chosen_labels"]).to(logps.device)
        count_r = response_token_counts(rows["rejected_labels"]).to(logps.device)
        policy_c, policy_r, ref_c, ref_r = policy_c / count_c, policy_r / count_r, ref_c / count_c, ref_r / count_r
    return dpo_loss(policy_c, policy_r, ref_c, ref_r, spec.beta, spec.loss_type, spec.label_smoothing)


def unpaired_objective(logps: torch.Tensor, kl_logps: torch.Tensor, rows: dict[str, list], spec: DPOSpec) -> tuple[torch.Tensor, PreferenceStats]:
    """KTO on a batch of unpaired rows: policy log-probs ``logps`` [B] of the rows, ``kl_logps`` [B] of their mismatched
    KL sequences (no grad). z0 = the KL estimate averaged over ranks (TRL gathers it), clamped at 0 by kto_loss."""
    import torch.distributed as dist

    device = logps.device
    ref = torch.tensor(rows["ref_logp"], dtype=torch.float64, device=device)
    ref_kl = torch.tensor(rows["ref_kl_logp"], dtype=torch.float64, device=device)
    z = kto_kl_estimate(kl_logps.detach().double(), ref_kl)
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(z)
        z = z / dist.get_world_size()
    desirable = torch.tensor(rows["label"], dtype=torch.bool, device=device)
    weights = (spec.desirable_weight or 1.0, spec.undesirable_weight or 1.0)
    loss, rewards, z0 = kto_loss(logps.double(), ref, desirable, z, spec.beta, *weights)
    return loss, kto_stats(loss, rewards, desirable, spec.beta * float(z0), tie_tol=spec.beta * LOGPROB_TIE_TOL)


def objective_columns(spec: DPOSpec) -> tuple[str, list[str]]:
    """(artifact record type, extra columns the loop reads) for ``spec.loss_type``."""
    if spec.loss_type == "kto":
        return "unpaired", list(KL_COLUMNS) + list(KTO_REF_COLUMNS)
    return "preference", list(REF_COLUMNS) if spec.needs_reference else []


def dpo_loop_per_worker(loop_config: dict[str, Any]) -> dict[str, Any]:
    """Ray Train entry: re-validate the config (plain dict across the process boundary) and train."""
    from app.models.loader import load_tokenizer

    cfg = DPOConfig.model_validate(loop_config["cfg"])
    session = WorkerSession(loop_config, cfg)
    rank, world, device = session.rank, session.world, session.device
    t, d = cfg.train, cfg.dpo
    record_type, columns = objective_columns(d)
    train_rows, held_out = load_pair_splits(cfg.data, columns, t.seed, record_type)
    shard = PairShard(train_rows, rank, world, t.micro_batch_size, t.grad_accum, t.seed)
    if shard.steps_per_epoch == 0:
        raise ValueError(f"{n_rows(train_rows)} training pairs cannot fill one step of {world} workers x "
                         f"{t.micro_batch_size} pairs x {t.grad_accum}; lower train.micro_batch_size/grad_accum or add data")
    total_steps = min(t.max_steps or math.inf, shard.steps_per_epoch * t.epochs)

    zero_init = large_model_init(cfg)  # noqa: F841  (ZeRO-3: weights are partitioned as they are created)
    model, fill = load_model_for_strategy(loop_config["model_dir"], cfg, d.reference_adapter)  # FSDP2: meta device
    flops_per_token = model_flops_per_token(model, pair_tokens(train_rows) / (2 * n_rows(train_rows)))
    strat = make_strategy(PolicyLogprobs(model) if fill else PolicyLogprobs(model).to(device), cfg, total_steps, fill)
    resumed = session.restore(strat)
    session.open_reporter()
    state = session.state

    def policy_loss(rows: dict[str, list]) -> tuple[torch.Tensor, PreferenceStats]:
        if d.loss_type == "kto":
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.use_bf16):
                with torch.no_grad():
                    kl_logps = strat.model(concat_for_packed_forward(rows[KL_COLUMNS[0]], rows[KL_COLUMNS[1]]).to(device))
                logps = strat.model(concat_for_packed_forward(rows["input_ids"], rows["labels"]).to(device))
            return unpaired_objective(logps, kl_logps, rows, d)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.use_bf16):
            logps = strat.model(pack_pairs(rows, with_labels=True).to(device))
        loss, rewards_c, rewards_r = preference_objective(logps, rows, d)
        return loss, pair_stats(loss, rewards_c, rewards_r, tie_tol=d.beta * LOGPROB_TIE_TOL)

    if not resumed:  # the "before training" numbers; ASHA and the summary read them
        session.record_eval(evaluate_pairs(policy_loss, strat.model, held_out, t.micro_batch_size, rank, world, "rewards"), before=True)

    strat.model.train()
    while state.step < total_steps:
        step, wall_start, t0 = session.begin_step(shard.steps_per_epoch), time.time(), time.perf_counter()
        stats, tokens = pair_step(strat, shard.step_rows(state.epoch, state.batch_in_epoch), policy_loss, cfg.fault.nan_at_step == step)
        session.sigterm_drill(step)
        grad_norm, lr = strat.step()
        *means, tok_s = session.mean_over_ranks(stats + [tokens / (time.perf_counter() - t0)])
        if not (math.isfinite(means[0]) and math.isfinite(grad_norm)):
            return session.fail(f"non-finite loss {means[0]} / grad norm {grad_norm} at step {step}")
        state.step, state.batch_in_epoch = step, state.batch_in_epoch + 1
        done = step == total_steps
        if done or (t.eval_every and step % t.eval_every == 0):
            session.record_eval(evaluate_pairs(policy_loss, strat.model, held_out, t.micro_batch_size, rank, world, "rewards"))
        metrics = {**pair_metrics(step, means, "rewards"), "grad_norm": grad_norm, "lr": lr, "tokens_per_s": tok_s * world,
                   "mfu": session.mfu(flops_per_token, tok_s * world), "epoch": state.epoch, "tokens": tokens * world,
                   "wall_start": wall_start, **state.latest_eval, **(state.eval_before if done else {})}

        def write_final(folder: Path) -> None:
            extra = {"dpo": d.model_dump(exclude={"precompute_batch_size", "precompute_cpus"})}
            tokenizer = load_tokenizer(loop_config["model_dir"]) if cfg.method == "full" else None
            write_output(strat, cfg, "dpo", folder, loop_config, metrics, rank, tokenizer, lineage_extra=extra)

        if session.end_step(metrics, strat, done, write_final):
            break
    return session.finish(state.history[-1] if state.history else None)
