"""The Ray Train loop shared by reward modelling and DPO: pairs in, a preference loss out, exact resume.

Both methods train on pairs from a "preference" dataset artifact and differ only in how a batch of pairs becomes a
loss (:class:`PreferenceMethod`: app/train/reward.py, app/train/dpo.py). This module owns the rest, read top to
bottom in :func:`train_preference`:

    rows ─ deterministic per-epoch order, sharded by rank ─▶ method.loss ─▶ backward ─▶ all-reduce grads ─▶ AdamW
      every log_every: report; every eval_every: held-out eval; every checkpoint_every: checkpoint (train's format)
      end: held-out eval + final model in the last checkpoint's ``model/`` folder (the driver copies it out)

Gradients of the (few) trainable parameters are averaged with one all-reduce per step instead of DDP: the methods
call the backbone directly (packed, head only where needed), which DDP's forward hooks would not see.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any, Protocol

import torch

from app.config.reward import PreferenceDataSpec
from app.core.preference_losses import PreferenceStats
from app.train.checkpoint import (
    TrainState,
    any_rank,
    finalize_checkpoint,
    load_state,
    preemption_requested,
    restore_checkpoint,
    restore_rng_state,
    seed_everything,
    staged_checkpoint,
    write_rng_state,
)

log = logging.getLogger(__name__)
PAIR_COLUMNS = ["chosen_input_ids", "chosen_labels", "rejected_input_ids", "rejected_labels"]


class PreferenceMethod(Protocol):
    """What a preference method plugs into the loop."""

    name: str
    columns: list[str]  # artifact columns the method reads besides PAIR_COLUMNS
    score_name: str  # what chosen/rejected scores are called in metrics: "rewards" (DPO implicit rewards) or "scores"

    def build_model(self) -> torch.nn.Module: ...

    def loss(self, model: torch.nn.Module, rows: dict[str, list]) -> tuple[torch.Tensor, PreferenceStats]: ...

    def save_model(self, model: torch.nn.Module, folder: Path, metrics: dict[str, float]) -> None: ...


# ---------------------------------------------------------------- data
def load_pair_splits(spec: PreferenceDataSpec, columns: list[str], seed: int) -> tuple[dict[str, list], dict[str, list]]:
    """(train, eval) columns of the artifact as dicts of lists; eval is the artifact's eval split, or a seeded hold-out.

    Pairs longer than ``spec.max_length`` (either side) are dropped from both; ``max_pairs`` / ``max_eval_pairs`` cap sizes.
    """
    from app.data.artifact import load_artifact
    from app.data.errors import DataError

    artifact = load_artifact(spec.artifact)
    if artifact.manifest["record_type"] != "preference":
        raise DataError(f"{artifact.path}: record_type is {artifact.manifest['record_type']!r}, need 'preference'")
    wanted = PAIR_COLUMNS + columns

    def read(split: str) -> dict[str, list]:
        table = artifact.read_table(split)
        missing = [c for c in wanted if c not in table.column_names]
        if missing:
            raise DataError(f"{artifact.path}/{split}: missing columns {missing}")
        data = {c: table.column(c).to_pylist() for c in wanted}
        if spec.max_length:
            keep = [i for i in range(table.num_rows) if max(len(data["chosen_input_ids"][i]), len(data["rejected_input_ids"][i])) <= spec.max_length]
            data = select_rows(data, keep)
        return data

    train = read(spec.train_split)
    if spec.eval_split in artifact.manifest["splits"]:
        held_out = read(spec.eval_split)
    else:
        n = len(train["chosen_input_ids"])
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
        n_eval = int(round(n * spec.eval_fraction))
        held_out, train = select_rows(train, order[:n_eval]), select_rows(train, sorted(order[n_eval:]))
    if spec.max_pairs:
        train = select_rows(train, range(min(spec.max_pairs, n_rows(train))))
    if spec.max_eval_pairs:
        held_out = select_rows(held_out, range(min(spec.max_eval_pairs, n_rows(held_out))))
    if n_rows(train) == 0:
        raise DataError(f"{artifact.path}: no training pairs left (split {spec.train_split!r}, max_length {spec.max_length})")
    return train, held_out


def n_rows(data: dict[str, list]) -> int:
    return len(next(iter(data.values()))) if data else 0


def select_rows(data: dict[str, list], index) -> dict[str, list]:
    index = list(index)
    return {k: [v[i] for i in index] for k, v in data.items()}


def epoch_batches(n: int, batch_size: int, epoch: int, seed: int, rank: int, world: int) -> list[list[int]]:
    """Row indices of each optimizer step of one epoch for one rank: seeded permutation, equal steps on every rank."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch)).tolist()
    per_step = batch_size * world
    steps = n // per_step if n >= per_step else 1
    return [order[s * per_step : (s + 1) * per_step][rank::world][:batch_size] or order[:1] for s in range(steps)]


# ---------------------------------------------------------------- evaluation
@torch.no_grad()
def evaluate(method: PreferenceMethod, model: torch.nn.Module, data: dict[str, list], batch_size: int) -> dict[str, float]:
    """Mean held-out loss/accuracy/margin/chosen/rejected over all pairs (pair-weighted), prefixed ``eval/``."""
    model.eval()
    totals: dict[str, float] = {}
    n = n_rows(data)
    for start in range(0, n, batch_size):
        rows = select_rows(data, range(start, min(n, start + batch_size)))
        _, stats = method.loss(model, rows)
        for k, v in stat_metrics(stats, method.score_name, "eval/").items():
            totals[k] = totals.get(k, 0.0) + v * n_rows(rows)
    model.train()
    return {k: v / max(n, 1) for k, v in totals.items()} | {"eval/pairs": float(n)}


def stat_metrics(stats: PreferenceStats, score_name: str, prefix: str) -> dict[str, float]:
    """{prefix}loss, accuracy, margin, {score_name}/chosen, {score_name}/rejected."""
    return {
        f"{prefix}loss": stats.loss, f"{prefix}accuracy": stats.accuracy, f"{prefix}margin": stats.margin,
        f"{prefix}{score_name}/chosen": stats.chosen, f"{prefix}{score_name}/rejected": stats.rejected,
    }


def average_gradients(params: list[torch.nn.Parameter]) -> None:
    """Mean of every rank's gradients (one flat all-reduce); no-op on a single worker."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for p in params:
        p.grad = flat[offset : offset + p.numel()].view_as(p).clone()
        offset += p.numel()


# ---------------------------------------------------------------- the loop
def train_preference(cfg, method: PreferenceMethod, config_hash: str, tracker=None, run_dir: str | None = None) -> dict[str, Any]:
    """Run inside a Ray Train worker: train ``method`` under ``cfg`` (RewardConfig or DPOConfig); resume if a checkpoint exists.

    ``tracker`` (rank 0 only, optional): object with ``log_metrics(dict, step)``. ``run_dir``: the run's storage
    folder, searched for checkpoints Ray never registered when it has none. Returns the final metrics.
    """
    import ray.train
    from ray.train import Checkpoint

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    t = cfg.train
    torch.set_num_threads(max(1, math.ceil(cfg.scaling.cpus_per_worker)))
    seed_everything(t.seed)
    train_rows, eval_rows = load_pair_splits(cfg.data, method.columns, t.seed)
    model = method.build_model()
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / (cfg.optim.warmup_steps + 1)))
    steps_per_epoch = len(epoch_batches(n_rows(train_rows), t.micro_batch_size, 0, t.seed, rank, world))
    total_steps = min(t.max_steps or math.inf, steps_per_epoch * t.epochs)

    state = TrainState(config_hash=config_hash)
    with restore_checkpoint(ray.train.get_checkpoint(), run_dir) as folder:
        if folder is not None:
            state = load_state(folder)
            trainable = torch.load(folder / "trainable.pt", weights_only=True)
            missing = set(n for n, p in model.named_parameters() if p.requires_grad) - set(trainable)
            if missing:
                raise RuntimeError(f"checkpoint {folder} lacks trainable weights {sorted(missing)[:3]}")
            model.load_state_dict(trainable, strict=False)
            optimizer.load_state_dict(torch.load(folder / "optimizer.pt", weights_only=False))
            scheduler.load_state_dict(torch.load(folder / "scheduler.pt", weights_only=False))
            restore_rng_state(folder, rank)
            state.resumed_from.append(state.step)
            log.info("rank %d resumed at step %d (epoch %d, batch %d)", rank, state.step, state.epoch, state.batch_in_epoch)

    def checkpoint(metrics: dict[str, float], final: bool) -> None:
        with staged_checkpoint(rank, state.step) as folder:
            if rank == 0:
                trainable = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
                torch.save(trainable, folder / "trainable.pt")
                torch.save(optimizer.state_dict(), folder / "optimizer.pt")
                torch.save(scheduler.state_dict(), folder / "scheduler.pt")
                if final:
                    method.save_model(model, folder / "model", metrics)
            write_rng_state(folder, rank)
            finalize_checkpoint(folder, state, rank, extra={"method": method.name, "final": final})
            ray.train.report(latest_eval | metrics | {"step": float(state.step)}, checkpoint=Checkpoint.from_directory(folder))

    latest_eval: dict[str, float] = {}

    def report(metrics: dict[str, float]) -> None:
        """Every rank reports (Ray Train's report is collective); the latest eval metrics ride along for ASHA."""
        metrics = latest_eval | metrics | {"step": float(state.step)}
        if rank == 0 and tracker is not None:
            tracker.log_metrics(metrics, state.step)
        ray.train.report(metrics)

    latest_eval = evaluate(method, model, eval_rows, t.micro_batch_size)  # fresh run: the "before training" numbers
    if state.step == 0 and not state.resumed_from:
        before = {k.replace("eval/", "eval_before/"): v for k, v in latest_eval.items()}
        state.history.append(before)
        report(before)

    t0, tokens = time.perf_counter(), 0
    last: dict[str, float] = {}
    while state.step < total_steps and state.epoch < t.epochs:
        batches = epoch_batches(n_rows(train_rows), t.micro_batch_size, state.epoch, t.seed, rank, world)
        while state.batch_in_epoch < len(batches) and state.step < total_steps:
            rows = select_rows(train_rows, batches[state.batch_in_epoch])
            loss, stats = method.loss(model, rows)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            average_gradients(params)
            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, cfg.optim.max_grad_norm))
            if not math.isfinite(stats.loss):
                raise FloatingPointError(f"{method.name}: non-finite loss at step {state.step + 1}")
            optimizer.step()
            scheduler.step()
            state.step += 1
            state.batch_in_epoch += 1
            tokens += sum(len(x) for x in rows["chosen_input_ids"]) + sum(len(x) for x in rows["rejected_input_ids"])
            last = stat_metrics(stats, method.score_name, "train/") | {
                "train/grad_norm": grad_norm, "train/lr": scheduler.get_last_lr()[0], "step": float(state.step),
                "epoch": float(state.epoch), "train/tokens_per_s": tokens * world / (time.perf_counter() - t0),
            }
            state.history.append({"step": state.step, "loss": stats.loss, "accuracy": stats.accuracy})
            done = state.step >= total_steps
            if t.eval_every and state.step % t.eval_every == 0 and not done:
                latest_eval = evaluate(method, model, eval_rows, t.micro_batch_size)
            if state.step % t.log_every == 0 and not done:
                report(last)
            preempted = any_rank(preemption_requested())
            if (state.step % cfg.checkpoint.every_steps == 0 and not done) or preempted:
                checkpoint(last, final=False)
            if preempted:
                state.status = "preempted"
                return last
        if state.batch_in_epoch >= len(batches):
            state.epoch, state.batch_in_epoch = state.epoch + 1, 0
    latest_eval = evaluate(method, model, eval_rows, t.micro_batch_size)
    final = last | latest_eval | {k: v for h in state.history[:1] for k, v in h.items() if k.startswith("eval_before/")}
    final["step"] = float(state.step)
    state.status = "finished"
    if rank == 0 and tracker is not None:
        tracker.log_metrics(final, state.step)
    checkpoint(final, final=True)
    return final


# ---------------------------------------------------------------- tracking
def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} → {"a.b": 1} (MLflow params are flat)."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out |= flatten(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


class MlflowTracker:
    """One MLflow run (a child of ``parent_run_id`` in sweeps): flat config params, per-step metrics."""

    def __init__(self, spec, run_name: str, params: dict[str, Any], parent_run_id: str | None = None):
        from mlflow.tracking import MlflowClient

        from app.tracking.mlflow_store import configure_mlflow

        mlflow = configure_mlflow(spec)
        self.client = MlflowClient()
        self.experiment_id = mlflow.get_experiment_by_name(spec.experiment).experiment_id
        tags = {"mlflow.parentRunId": parent_run_id} if parent_run_id else {}
        self.run_id = self.client.create_run(self.experiment_id, run_name=run_name, tags=tags).info.run_id
        from mlflow.entities import Param

        items = [Param(k, str(v)[:5000]) for k, v in flatten(params).items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[i : i + 100])

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        rows = [Metric(k, float(v), now, step) for k, v in metrics.items() if isinstance(v, (int, float)) and math.isfinite(v)]
        self.client.log_batch(self.run_id, metrics=rows)

    def close(self, status: str = "FINISHED") -> None:
        self.client.set_terminated(self.run_id, status)


def open_tracker(spec, loop_config: dict[str, Any]) -> MlflowTracker | None:
    """The rank-0 MLflow tracker of a training run, or None (tracking off, or not rank 0)."""
    import ray.train

    if not spec.enabled or ray.train.get_context().get_world_rank() != 0:
        return None
    return MlflowTracker(spec, loop_config["run_name"], loop_config["config"], loop_config.get("parent_run_id"))
