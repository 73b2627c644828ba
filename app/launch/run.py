"""Driver side of every training method (the only training driver; Ray Train objects come from app/launch/trainer.py): launch the Ray Train run, copy the finished model out, draw the loss curve.

    outcome = run_training("sft", load_config("configs/sft/smollm2_lora_gsm8k.yaml", SFTConfig))
    outcome = run_training("dpo", dpo_cfg)          # reference log-probs: app/launch/preference.py precomputes them
    outcome.status, outcome.output_dir, outcome.history, outcome.metrics

Re-running the same config (or the same ``ray.run_name``) resumes from the newest valid checkpoint.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from app.config.common import TrainingConfig
from app.config.sft import SFTConfig

log = logging.getLogger(__name__)


class TrainingFailed(RuntimeError):
    """The run stopped for good (non-finite loss, or a worker error after all retries)."""


@dataclass
class TrainOutcome:
    status: str
    run_name: str
    step: int
    history: list[dict[str, float]] = field(default_factory=list)
    resumed_from: list[int] = field(default_factory=list)
    output_dir: Path | None = None
    checkpoint_path: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)


def run_sft(cfg: SFTConfig) -> TrainOutcome:
    return run_training("sft", cfg)


def run_training(kind: str, cfg: TrainingConfig, run_name: str | None = None, parent_run_id: str | None = None,
                 callbacks: Sequence[Any] = ()) -> TrainOutcome:
    """Train ``kind`` ('sft' | 'reward' | 'dpo') under ``cfg`` on Ray Train; publish the output when it completed."""
    from app.launch.runtime import check_run_storage, init_ray
    from app.launch.trainer import trainer_for

    storage = check_run_storage(cfg.ray)  # an object-store storage_path is reached now, before Ray starts
    init_ray(cfg.ray)
    trainer = trainer_for(kind, cfg, run_name, parent_run_id, callbacks)
    run_name = trainer.run_config.name
    log.info("training run %s (storage %s)", run_name, storage)
    result = trainer.fit()
    if result.error is not None:
        raise TrainingFailed(f"run {run_name} failed: {result.error}") from result.error
    ret = result.return_value or {}
    outcome = TrainOutcome(ret.get("status", "unknown"), run_name, ret.get("step", 0), ret.get("history", []),
                           ret.get("resumed_from", []), checkpoint_path=result.checkpoint.path if result.checkpoint else None,
                           metrics=ret.get("metrics") or {})
    if outcome.status == "failed":
        raise TrainingFailed(f"run {run_name}: {ret.get('reason')}; not retried (fix the config, then use a new run name)")
    if outcome.status == "completed" and result.checkpoint is not None:
        outcome.output_dir = publish_output(cfg, result.checkpoint, run_name, storage, ret)
    return outcome


def publish_output(cfg: TrainingConfig, checkpoint, run_name: str, storage: str, ret: dict[str, Any]) -> Path:
    """Copy the final adapter/model (with its lineage) out of the last checkpoint; add the loss curve and MLflow artifacts."""
    from app.config.paths import rayalign_home
    from app.launch.storage import upload_folder
    from app.train.output import export_output, output_kind
    from app.train.reporting import plot_loss_curve

    kind = output_kind(cfg)
    # object-store storage: a local copy (output.dir, else under RAYALIGN_HOME: what later stages read), uploaded next
    # to the checkpoints either way (configs/tiny/sft_lora.yaml sets output.dir)
    remote = f"{storage}/{run_name}/{kind}" if "://" in storage else None
    local = (Path(cfg.output.dir).expanduser() if cfg.output.dir else
             rayalign_home() / "outputs" / run_name / kind if remote else Path(storage) / run_name / kind)
    out = export_output(checkpoint, local)
    history = [h for h in ret.get("history", []) if "loss" in h]
    png = plot_loss_curve(history, out / "loss_curve.png", title=f"{run_name} loss") if history else None
    if remote:
        upload_folder(out, remote)
        log.info("output %s uploaded to %s", out, remote)
    if cfg.tracking.enabled and ret.get("tracking_run_id"):
        from app.tracking.mlflow_store import configure_mlflow

        mlflow = configure_mlflow(cfg.tracking)
        with mlflow.start_run(run_id=ret["tracking_run_id"]):
            mlflow.log_artifacts(str(out), artifact_path=kind)
            if png:
                mlflow.log_artifact(str(png))
    return out
