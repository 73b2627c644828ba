"""The per-worker plumbing every training loop shares (sft, reward, dpo): one place for what is not the method.

    session = WorkerSession(loop_config, cfg)              # rank/world, threads, device, seeds, peak FLOP/s
    strat = make_strategy(module, cfg, total_steps)         # app/train/strategy.py (ddp | fsdp2 | deepspeed)
    session.restore(strat)                                  # newest valid checkpoint (incl. unregistered ones), RNG
    session.open_reporter()                                 # rank 0: MLflow run (resumed if any) + Ray gauges
    while session.state.step < total_steps:
        ...forward (method's module), core loss, strat.backward, session.sigterm_drill(step), strat.step()...
        if session.end_step(metrics, strat, done, write_final):   # history, report, SIGTERM agreement, checkpoint, kill drill
            break
    return session.finish()                                 # Result.return_value: status, step, history, metrics

Checkpoints: each rank's strategy files + RNG state + the manifest (app/train/checkpoint.py). The final checkpoint
also holds the method's finished output (``write_final(folder)`` → ``adapter/`` or ``model/`` with lineage), which
the driver copies out (app/launch/run.py). Preemption: SIGTERM only raises a flag (the handler is installed by the
trainer's backend, app/launch/trainer.py); every rank agrees on it at the step boundary, checkpoints, and stops.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import time
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist

from app.config.common import TrainingConfig
from app.core.flops import mfu_fraction, train_flops_per_token
from app.models.lean_imports import skip_unused_imports
from app.train.checkpoint import (
    TrainState, any_rank, finalize_checkpoint, load_state, preemption_requested, restore_checkpoint,
    restore_rng_state, seed_everything, staged_checkpoint, wait_for_preemption_flag, write_rng_state,
)
from app.train.cpu_priority import helper_nice, lower_helper_threads, name_compute_thread
from app.train.peak import hardware_peak_flops
from app.train.reporting import StepReporter, flatten_params, quiet_ray_report_log

log = logging.getLogger(__name__)


def model_flops_per_token(model: torch.nn.Module, seq_len: float) -> float:
    """Training FLOPs per token of a transformers decoder (frozen weights skip their weight gradients; app/core/flops.py)."""
    cfg = model.config
    numel = lambda p: getattr(p, "ds_numel", p.numel())  # noqa: E731  (ZeRO-3 partitions: ds_numel is the full size)
    n_all = sum(numel(p) for n, p in model.named_parameters() if "embed_tokens" not in n)
    n_train = sum(numel(p) for p in model.parameters() if p.requires_grad)
    return train_flops_per_token(n_all, cfg.num_hidden_layers, cfg.hidden_size, int(seq_len), n_trainable=n_train)


class WorkerSession:
    """State and side effects of one training worker: checkpoint, resume, report, faults, MFU."""

    def __init__(self, loop_config: dict[str, Any], cfg: TrainingConfig):
        import ray.train

        skip_unused_imports()  # before any model code: ~100 MiB less per rank (app/models/lean_imports.py)
        quiet_ray_report_log()  # Ray Train's INFO line per report, unless -v (app/train/reporting.py)
        self.loop_config, self.cfg = loop_config, cfg
        self.cfg_hash, self.run_name = loop_config["config_hash"], loop_config["run_name"]
        ctx = ray.train.get_context()
        self.rank, self.world = ctx.get_world_rank(), ctx.get_world_size()
        # one CPU worker: name this (the train) thread before any torch op starts its OpenMP team, so that team can
        # be told apart from Ray's helper threads, which yield to it after the first step (app/train/cpu_priority.py)
        self.helper_nice = helper_nice() if self.world == 1 and not cfg.scaling.use_gpu and name_compute_thread() else 0
        torch.set_num_threads(max(1, math.ceil(cfg.scaling.cpus_per_worker)))
        if cfg.scaling.use_gpu:
            import ray.train.torch

            self.device = ray.train.torch.get_device()
            torch.cuda.set_device(self.device)
        else:
            self.device = torch.device("cpu")
        seed_everything(cfg.train.seed)  # identical initial weights (LoRA / head init) on every rank
        self.state = TrainState(config_hash=self.cfg_hash)
        self.first_step = 0
        self._preempt_agreed: bool | None = None  # this step's SIGTERM agreement, made in mean_over_ranks
        self.reporter: StepReporter | None = None
        self.peak_flops, self.peak_source = hardware_peak_flops(self.device, cfg.use_bf16, cfg.output.peak_flops)

    # ------------------------------------------------------------ start
    def restore(self, strat) -> bool:
        """Load the newest valid checkpoint of this run into ``strat`` (+ state, RNG); True when one was found.

        Seeds the per-rank dropout stream first, so a fresh run and a resumed run draw from the same streams.
        """
        import ray.train

        seed_everything(self.cfg.train.seed + 1 + self.rank)
        with restore_checkpoint(ray.train.get_checkpoint(), self.loop_config.get("run_dir")) as folder:
            if folder is None:
                return False
            state = load_state(folder)
            if state.config_hash != self.cfg_hash:
                raise ValueError(f"run '{self.run_name}' was started with another config (hash {state.config_hash[:10]}); use a new run name")
            strat.load(folder, self.rank)
            restore_rng_state(folder, self.rank)
            state.resumed_from.append(state.step)
            if state.status != "completed":  # a finished run stays finished: its loop runs no step, and the
                state.status = "running"     # re-run (README command 1 twice) returns it instead of 'running'
            self.state = state
        self.first_step = self.state.step
        log.info("rank %d resumed at step %d (epoch %d, batch %d)", self.rank, self.state.step, self.state.epoch, self.state.batch_in_epoch)
        return True

    def open_reporter(self) -> None:
        """Rank 0: the run's MLflow run (the same one again after a resume) and the Ray gauges."""
        if self.rank != 0:
            return
        lc = self.loop_config
        params = {**flatten_params(lc["cfg"]), "config_hash": self.cfg_hash, "dataset_id": lc.get("dataset_id", ""),
                  "base_sha": lc.get("base_sha", ""), "method": lc.get("kind", ""), "peak_flops": f"{self.peak_flops:.4g} ({self.peak_source})"}
        self.reporter = StepReporter(self.run_name, lc.get("tracking_uri"), self.cfg.tracking.experiment, params,
                                     self.state.tracking_run_id, lc.get("parent_run_id"))
        self.state.tracking_run_id = self.reporter.run_id

    # ------------------------------------------------------------ per step
    def begin_step(self, steps_per_epoch: int) -> int:
        """Advance the data cursor to the next epoch when this one is used up; returns the step about to run (1-based)."""
        s = self.state
        if s.batch_in_epoch >= steps_per_epoch:
            s.epoch, s.batch_in_epoch = s.epoch + 1, 0
        return s.step + 1

    def mean_over_ranks(self, values: list[float]) -> list[float]:
        """Element-wise mean of this step's ``values`` over all ranks, with the ranks' SIGTERM agreement riding in
        the same all-reduce: one collective per step (was two), none on a single worker."""
        flag = 1.0 if preemption_requested() else 0.0
        if self.world > 1 and dist.is_available() and dist.is_initialized():
            from app.train.checkpoint import collective_device

            t = torch.tensor([*values, flag], dtype=torch.float64, device=collective_device())  # NCCL: CUDA tensors
            dist.all_reduce(t)
            *sums, flag = t.tolist()
            values = [v / self.world for v in sums]
        self._preempt_agreed = flag > 0
        return [float(v) for v in values]

    def record_eval(self, held_out: dict[str, float], before: bool = False) -> None:
        """Keep the newest held-out figures (they ride along in every report, for ASHA); ``before``: also as the
        run's ``eval_before/*`` baseline, reported at step 0."""
        self.state.latest_eval = held_out
        if before:
            self.state.eval_before = {k.replace("eval/", "eval_before/", 1): v for k, v in held_out.items()}
            self.report({"step": 0, **held_out, **self.state.eval_before})  # eval/*: a sweep's metric exists from step 0

    def mfu(self, flops_per_token: float, tokens_per_s: float) -> float:
        """Model FLOPs utilisation of the whole group: global tokens/s over world × the per-worker hardware peak."""
        return mfu_fraction(flops_per_token, tokens_per_s, self.peak_flops * self.world)

    def sigterm_drill(self, step: int) -> None:
        """fault.sigterm_at_step: the chosen rank signals itself mid-step (once: not on the resumed run)."""
        f = self.cfg.fault
        if f.sigterm_at_step == step and self.rank == f.rank and self.first_step < step:
            os.kill(os.getpid(), signal.SIGTERM)  # the handler only raises a flag; the loop stops at this boundary
            if not wait_for_preemption_flag(10.0):  # the main thread runs the handler when it next runs Python
                raise RuntimeError("fault.sigterm_at_step: the SIGTERM handler did not run within 10 s")

    def report(self, metrics: dict[str, Any], checkpoint=None) -> None:
        import ray.train

        ray.train.report({**metrics, "status": self.state.status}, checkpoint=checkpoint)

    def end_step(self, metrics: dict[str, Any], strat, done: bool, write_final: Callable[[Path], None] | None = None) -> bool:
        """Book-keeping after optimizer step ``state.step``: history, MLflow/gauges, SIGTERM agreement, checkpoint
        (every ``checkpoint.every_steps``, at the end, or on preemption) or a plain report. True: stop the loop."""
        from ray.train import Checkpoint

        step = self.state.step
        self.state.history.append(metrics)
        if self.helper_nice and (step == self.first_step + 1 or step % self.cfg.train.log_every == 0):
            # after the first step (the OpenMP team exists), and again at each report for threads started since
            lower_helper_threads(self.helper_nice, torch.get_num_threads())
        # agreed in this step's mean_over_ranks (the loops call it after strat.step()), else with its own all-reduce
        preempted = self._preempt_agreed if self._preempt_agreed is not None else any_rank(preemption_requested())
        self._preempt_agreed = None
        if self.reporter:
            self.reporter.log(metrics, step, last=done or preempted)
        self.state.status = "completed" if done else "preempted" if preempted else "running"
        if preempted or done or step % self.cfg.checkpoint.every_steps == 0:
            with staged_checkpoint(self.rank, step) as folder:
                strat.save(folder, self.rank)
                write_rng_state(folder, self.rank)
                if done and write_final is not None:
                    write_final(folder)  # collective (gathers full weights); rank 0 writes
                finalize_checkpoint(folder, self.state, self.rank)
                self.report(metrics, Checkpoint.from_directory(str(folder)))
        elif step % self.cfg.train.log_every == 0:
            self.report(metrics)
        f = self.cfg.fault
        if f.kill_at_step == step and self.rank == f.rank and self.first_step < step:
            time.sleep(3.0)  # let the controller register the step's checkpoint first
            os._exit(1)  # drill: abrupt worker death; FailureConfig restarts from the newest checkpoint
        return preempted and not done

    def fail(self, reason: str) -> dict[str, Any]:
        """A non-finite loss: end the run as failed (not retried; the config must change)."""
        self.state.status = "failed"
        if self.reporter:
            self.reporter.close("failed")
        return {"status": "failed", "step": self.state.step, "reason": reason, "history": self.state.history}

    def finish(self, metrics: dict[str, Any] | None = None) -> dict[str, Any]:
        """Close the MLflow run; the plain dict the driver gets back as ``Result.return_value``."""
        if self.reporter:
            self.reporter.close(self.state.status)
        return {"status": self.state.status, "step": self.state.step, "history": self.state.history,
                "resumed_from": self.state.resumed_from, "tracking_run_id": self.state.tracking_run_id,
                "metrics": metrics or (self.state.history[-1] if self.state.history else {})}
