"""Launch reward-model and DPO training as Ray Train fits (the only place their TorchTrainers are built).

    summary = fit_preference("dpo", cfg)   # precompute reference log-probs if needed → TorchTrainer.fit → export model

Resume: a re-run with the same run name (``ray.run_name``, default ``<kind>-<config hash>``) and storage picks up the
newest valid checkpoint (Ray Train V2 semantics); ``scaling.max_failures`` restarts crashed workers from it.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any, Sequence

from app.config.common import training_hash
from app.config.loader import resolved_dict
from app.config.paths import rayalign_home
from app.launch.runtime import init_ray, run_name_for, storage_root

log = logging.getLogger(__name__)
LOOPS = {"reward": "app.train.reward:reward_loop_per_worker", "dpo": "app.train.dpo:dpo_loop_per_worker"}


def loop_function(kind: str):
    import importlib

    module, _, name = LOOPS[kind].partition(":")
    return getattr(importlib.import_module(module), name)


def build_preference_trainer(kind: str, cfg, run_name: str, parent_run_id: str | None = None, callbacks: Sequence = ()):
    """A TorchTrainer for ``kind`` ('reward' | 'dpo'): CPU workers per ``cfg.train``, checkpoints under the run storage."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    storage = storage_root(cfg.ray)
    loop_config = {
        "config": resolved_dict(cfg), "config_hash": training_hash(cfg), "run_name": run_name, "parent_run_id": parent_run_id,
        "run_dir": f"{storage}/{run_name}",  # where a checkpoint Ray never registered (killed driver) is found
    }
    return TorchTrainer(
        loop_function(kind),
        train_loop_config=loop_config,
        scaling_config=ScalingConfig(num_workers=cfg.scaling.num_workers, use_gpu=False, resources_per_worker={"CPU": cfg.scaling.cpus_per_worker}),
        run_config=RunConfig(
            name=run_name,
            storage_path=storage,
            checkpoint_config=CheckpointConfig(num_to_keep=2),
            failure_config=FailureConfig(max_failures=cfg.scaling.max_failures),
            callbacks=list(callbacks),
        ),
    )


def ensure_reference_logprobs(cfg) -> dict[str, Any]:
    """DPO only: precompute the reference log-probs into the artifact unless this reference's are already there."""
    from app.data.reference_logprobs import precompute_reference_logprobs

    d = cfg.dpo
    return precompute_reference_logprobs(cfg.data.artifact, cfg.model, d.reference_adapter, d.precompute_batch_size, d.precompute_cpus)


def export_model(checkpoint, out_dir: str | Path) -> Path:
    """Copy the final checkpoint's ``model/`` folder (adapter or reward model + lineage) to ``out_dir``."""
    out = Path(out_dir).expanduser()
    with checkpoint.as_directory() as folder:
        src = Path(folder) / "model"
        if not src.is_dir():
            raise RuntimeError(f"checkpoint {checkpoint.path} has no model/ folder (run did not finish)")
        tmp = out.with_name(out.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(src, tmp)
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)
    return out


def fit_preference(kind: str, cfg, parent_run_id: str | None = None, callbacks: Sequence = ()) -> dict[str, Any]:
    """Train ``kind`` under ``cfg`` on Ray; returns {run_name, output_dir, metrics}. Joins/starts Ray per ``cfg.ray``."""
    init_ray(cfg.ray)
    if kind == "dpo":
        ensure_reference_logprobs(cfg)
    run_name = run_name_for(kind, training_hash(cfg), cfg.ray)
    result = build_preference_trainer(kind, cfg, run_name, parent_run_id, callbacks).fit()
    if result.error is not None:
        raise result.error
    out = Path(cfg.output.dir) if cfg.output.dir else rayalign_home() / "adapters" / run_name
    exported = export_model(result.checkpoint, out)
    return {"run_name": run_name, "output_dir": str(exported), "metrics": dict(result.metrics or {}),
            "checkpoint_path": result.checkpoint.path}
