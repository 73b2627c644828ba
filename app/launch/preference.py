"""Launch reward-model and DPO training: the reference precompute DPO needs, then the one engine (app/launch/run.py).

    summary = fit_preference("dpo", cfg)   # precompute reference log-probs if needed → run_training → output folder

Resume: a re-run with the same run name (``ray.run_name``, default ``<kind>-<training hash>``) and storage picks up
the newest valid checkpoint (Ray Train V2 semantics); ``scaling.max_failures`` restarts crashed workers from it.
"""

from __future__ import annotations

from typing import Any, Sequence

from app.launch.runtime import init_ray


def ensure_reference_logprobs(cfg) -> dict[str, Any]:
    """DPO only: precompute the reference log-probs into the artifact unless this reference's are already there
    (after checking the artifact's record type fits ``dpo.loss_type``). Reference-free losses (simpo, orpo): {}."""
    from app.config.dpo import check_artifact_fits_loss
    from app.config.errors import ConfigError
    from app.data.artifact import load_artifact
    from app.data.reference_logprobs import precompute_reference_logprobs

    d = cfg.dpo
    try:
        check_artifact_fits_loss(cfg, load_artifact(cfg.data.artifact).record_type)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    if not d.needs_reference:
        return {}
    return precompute_reference_logprobs(cfg.data.artifact, cfg.model, d.reference_adapter, d.precompute_batch_size, d.precompute_cpus)


def fit_preference(kind: str, cfg, parent_run_id: str | None = None, callbacks: Sequence = ()) -> dict[str, Any]:
    """Train ``kind`` ('reward' | 'dpo') under ``cfg`` on Ray; returns {run_name, status, output_dir, metrics,
    checkpoint_path, history}. Joins/starts Ray per ``cfg.ray``."""
    from app.launch.run import run_training

    init_ray(cfg.ray)
    if kind == "dpo":
        ensure_reference_logprobs(cfg)
    outcome = run_training(kind, cfg, parent_run_id=parent_run_id, callbacks=callbacks)
    return {"run_name": outcome.run_name, "status": outcome.status, "step": outcome.step,
            "output_dir": str(outcome.output_dir) if outcome.output_dir else None, "metrics": outcome.metrics,
            "checkpoint_path": outcome.checkpoint_path, "history": outcome.history, "resumed_from": outcome.resumed_from}
