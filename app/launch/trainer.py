"""The one place that builds Ray Train objects: ScalingConfig, RunConfig, FailureConfig, TorchTrainer.

Every training method goes through ``trainer_for(kind, cfg, run_name)``: one loop config envelope, one SIGTERM-aware
backend, one scaling (CPU gloo or GPU NCCL from ``scaling.use_gpu``), one checkpoint retention.

Workers get a SIGTERM handler on their MAIN thread before any training code runs (Ray Train runs the loop in a
separate thread, where ``signal.signal`` is not allowed): a small TorchConfig whose backend installs it in
``on_start``. Resume is by name: the same ``RunConfig(name, storage_path)`` makes ``ray.train.get_checkpoint()``
return the run's latest checkpoint (Ray 2.60 Train V2 has no ``resume_from_checkpoint``).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from ray.train import CheckpointConfig, DataConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchConfig, TorchTrainer
from ray.train.torch.config import _TorchBackend

from app.config.common import ScalingSpec, TrainingConfig, training_hash
from app.config.errors import ConfigError
from app.launch.torch_trainer import RayalignTorchTrainer
from app.train.checkpoint import install_sigterm_handler
from app.train.cpu_priority import DEFAULT_HELPER_NICE, HELPER_NICE_ENV
from app.train.reporting import RAY_REPORT_LOG_ENV


class _PreemptibleTorchBackend(_TorchBackend):
    def on_start(self, worker_group, backend_config):
        super().on_start(worker_group, backend_config)
        installed = worker_group.execute(install_sigterm_handler)
        if not all(installed):
            raise RuntimeError("could not install the SIGTERM handler on every training worker's main thread")


def worker_env() -> dict[str, str]:
    """Environment of every training worker process: ``MALLOC_ARENA_MAX=1`` (a value set in the driver's environment
    wins), so the train function, which Ray Train V2 runs in a thread of the worker (its ThreadRunner), allocates from
    the main malloc arena as a plain ``python train.py`` does. Session 7 added it for a 20-34 % slowdown of the bare
    loop in a plain thread; ``benchmarks/train_overhead.py`` later showed that slowdown was OpenMP's (the thread ran
    after the main thread had its own OpenMP team, and libgomp spins only briefly when it manages more threads than
    CPUs), and that a fresh thread runs at the main thread's speed with or without this setting.

    Also ``RAYALIGN_HELPER_THREAD_NICE`` (default 19, a driver value wins, 0 = off): the niceness a single CPU
    worker gives Ray's helper threads once its loop runs (app/train/cpu_priority.py).

    And ``RAYALIGN_RAY_REPORT_LOG``: "1" (keep Ray Train's INFO line per report, app/train/reporting.py) when this
    process logs at DEBUG (``rayalign … -v``), else "0"; a driver value wins."""
    verbose = logging.getLogger().getEffectiveLevel() <= logging.DEBUG
    return {"MALLOC_ARENA_MAX": os.environ.get("MALLOC_ARENA_MAX", "1"),
            HELPER_NICE_ENV: os.environ.get(HELPER_NICE_ENV, DEFAULT_HELPER_NICE),
            RAY_REPORT_LOG_ENV: os.environ.get(RAY_REPORT_LOG_ENV, "1" if verbose else "0")}


CONTROLLER_POLL_ENV = "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"
CONTROLLER_POLL_S = "0.5"


def controller_poll_interval() -> str:
    """How often (seconds) the Ray Train controller polls the workers: ``RAY_TRAIN_HEALTH_CHECK_INTERVAL_S``, 0.5 s
    here unless the driver's environment sets it (Ray's default is 2 s). Returns the value in effect.

    Ray Train V2 hands a worker's ``ray.train.report`` to the controller through a queue of size 1 that the
    controller empties once per poll, so a loop that reports more often than the controller polls waits in
    ``report``. Measured with Ray's 2 s (``benchmarks/train_overhead.py``: SFT steps of 0.1 s, a report every 10
    steps): each report waited ~1 s, and the steady span ran at 2,325-3,145 tok/s while its median step ran at
    4,744-4,912. Ray Train copies this variable from the driver's environment to the controller when ``fit()``
    starts it, so it is set in this process."""
    return os.environ.setdefault(CONTROLLER_POLL_ENV, CONTROLLER_POLL_S)


@dataclass
class PreemptibleTorchConfig(TorchConfig):
    """TorchConfig (gloo on CPU, nccl on GPU) plus a SIGTERM → checkpoint-and-stop handler on every worker."""

    @property
    def backend_cls(self):
        return _PreemptibleTorchBackend


def build_trainer(
    loop: Callable[[dict[str, Any]], Any],
    loop_config: dict[str, Any],
    scaling: ScalingSpec,
    run_name: str,
    storage_path: str,
    datasets: dict[str, Any] | None = None,
    keep_checkpoints: int = 3,
    callbacks: Sequence[Any] = (),
) -> TorchTrainer:
    """A TorchTrainer whose datasets are NOT split (each rank picks its rows deterministically, see batches.py). Sets
    the controller's poll interval default (``controller_poll_interval``) for the ``fit()`` that follows.

    ``callbacks``: Ray Train callbacks (a sweep trial passes ``TuneReportCallback`` so reports reach Tune/ASHA)."""
    from ray.data import ExecutionOptions

    controller_poll_interval()
    resources = {"CPU": scaling.cpus_per_worker}
    if scaling.use_gpu:
        resources["GPU"] = 1
    return RayalignTorchTrainer(
        loop,
        train_loop_config=loop_config,
        torch_config=PreemptibleTorchConfig(backend="nccl" if scaling.use_gpu else "gloo"),
        scaling_config=ScalingConfig(num_workers=scaling.num_workers, use_gpu=scaling.use_gpu, resources_per_worker=resources),
        run_config=RunConfig(
            name=run_name,
            storage_path=storage_path,
            failure_config=FailureConfig(max_failures=scaling.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=keep_checkpoints),
            callbacks=list(callbacks),
            worker_runtime_env={"env_vars": worker_env()},
        ),
        datasets=datasets or {},
        dataset_config=DataConfig(datasets_to_split=[], execution_options=ExecutionOptions(preserve_order=True)),
    )


LOOPS = {
    "sft": "app.train.sft:train_loop_per_worker",
    "reward": "app.train.reward:reward_loop_per_worker",
    "dpo": "app.train.dpo:dpo_loop_per_worker",
}


def loop_function(kind: str) -> Callable[[dict[str, Any]], Any]:
    import importlib

    module, _, name = LOOPS[kind].partition(":")
    return getattr(importlib.import_module(module), name)


def trainer_for(kind: str, cfg: TrainingConfig, run_name: str | None = None, parent_run_id: str | None = None,
                callbacks: Sequence[Any] = ()) -> TorchTrainer:
    """The TorchTrainer of any method (``kind`` in LOOPS) under ``cfg``; run name default ``<kind>-<training hash>``.

    The loop config is the one envelope every loop reads: the resolved config, its training hash, the run's storage
    folder (where checkpoints Ray never registered are found), the resolved base model and the dataset id.
    """
    from app.launch.runtime import run_name_for, storage_root
    from app.models.loader import resolve_model
    from app.tracking.mlflow_store import tracking_uri

    cfg_hash = training_hash(cfg)
    run_name = run_name or run_name_for(kind, cfg_hash, cfg.ray)
    storage = storage_root(cfg.ray)
    resolved = resolve_model(cfg.model)
    dataset_id, datasets, extra = _method_data(kind, cfg)
    loop_config = {
        "kind": kind, "cfg": cfg.model_dump(mode="json"), "config_hash": cfg_hash, "run_name": run_name,
        "run_dir": f"{storage}/{run_name}", "model_dir": str(resolved.path), "base_sha": resolved.base_sha,
        "dataset_id": dataset_id, "parent_run_id": parent_run_id,
        "tracking_uri": tracking_uri(cfg.tracking) if cfg.tracking.enabled else None, **extra,
    }
    return build_trainer(loop_function(kind), loop_config, cfg.scaling, run_name, storage, datasets, cfg.checkpoint.keep, callbacks)


def _method_data(kind: str, cfg) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(dataset id, Ray datasets, extra loop-config keys) of a method's data section."""
    if kind == "sft":
        manifest, split_dir = open_sft_artifact(cfg.data.artifact, cfg.data.split)
        # Nothing goes through the driver: each worker streams its own rows from the split's Parquet files
        # (app/train/batches.py StreamingShard), so the folder must be reachable from every worker, like storage_path.
        return manifest.get("id", ""), {}, {"seq_len": int(manifest.get("max_length", 512)),
                                            "train_split_dir": str(split_dir.resolve())}
    from app.data.artifact import load_artifact

    return load_artifact(cfg.data.artifact).id, {}, {}


def open_sft_artifact(path: str, split: str) -> tuple[dict[str, Any], Path]:
    """(manifest, split folder) of a packed SFT dataset artifact, with one-line errors for anything off-contract."""
    if not path:
        raise ConfigError("data.artifact is empty: point it at a dataset artifact folder (rayalign ingest writes one)")
    from app.data.artifact import resolve_artifact_dir

    folder = resolve_artifact_dir(path)  # a dataset name resolves to its newest version
    manifest_path = folder / "manifest.json"
    if not manifest_path.is_file():
        raise ConfigError(f"data.artifact {folder}: no manifest.json (not a dataset artifact)")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    if manifest.get("record_type") != "sft":
        raise ConfigError(f"data.artifact {folder}: record_type is {manifest.get('record_type')!r}, SFT needs 'sft' (packed)")
    split_dir = folder / split
    if not any(split_dir.glob("*.parquet")):
        raise ConfigError(f"data.artifact {folder}: split '{split}' has no parquet files")
    return manifest, split_dir
