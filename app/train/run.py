"""Driver side of `rayalign train`: resolve model + dataset, launch the Ray Train run, publish the adapter.

    outcome = run_sft(load_config("configs/sft/smollm2_lora_gsm8k.yaml", SFTConfig))
    outcome.status, outcome.output_dir, outcome.history

Re-running the same config (or the same ``ray.run_name``) resumes from the newest valid checkpoint.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.config.errors import ConfigError
from app.config.sft import SFTConfig, training_hash
from app.models.adapter import write_lineage
from app.models.loader import resolve_model

log = logging.getLogger(__name__)


class TrainingFailed(RuntimeError):
    """The run stopped for good (non-finite loss, or a worker error after all retries)."""


@dataclass
class SFTOutcome:
    status: str
    run_name: str
    step: int
    history: list[dict[str, float]] = field(default_factory=list)
    resumed_from: list[int] = field(default_factory=list)
    output_dir: Path | None = None
    checkpoint_path: str | None = None


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


def run_sft(cfg: SFTConfig) -> SFTOutcome:
    import ray.data

    from app.launch.runtime import init_ray, run_name_for, storage_root
    from app.launch.trainer import build_trainer
    from app.tracking.mlflow_store import tracking_uri
    from app.train.sft import train_loop_per_worker

    manifest, split_dir = open_sft_artifact(cfg.data.artifact, cfg.data.split)
    resolved = resolve_model(cfg.model)
    cfg_hash = training_hash(cfg)
    run_name = run_name_for("sft", cfg_hash, cfg.ray)
    storage = storage_root(cfg.ray)
    init_ray(cfg.ray)
    loop_config = {
        "cfg": cfg.model_dump(mode="json"),
        "config_hash": cfg_hash,
        "run_name": run_name,
        "run_dir": f"{storage}/{run_name}",  # where a checkpoint Ray never registered (killed driver) is found
        "model_dir": str(resolved.path),
        "dataset_id": manifest.get("id", ""),
        "base_sha": resolved.base_sha,
        "seq_len": int(manifest.get("max_length", 512)),
        "tracking_uri": tracking_uri(cfg.tracking) if cfg.tracking.enabled else None,
    }
    # Read once on the driver into the object store (a packed artifact is small next to the model): workers then
    # iterate ready blocks instead of each launching read tasks that compete with training for CPUs.
    import pyarrow.parquet as pq

    dataset = ray.data.from_arrow(pq.read_table(split_dir, columns=["input_ids", "labels", "position_ids"]))
    trainer = build_trainer(train_loop_per_worker, loop_config, cfg.scaling, run_name, storage, {"train": dataset}, cfg.checkpoint.keep)
    log.info("training run %s (storage %s)", run_name, storage)
    result = trainer.fit()
    if result.error is not None:
        raise TrainingFailed(f"run {run_name} failed: {result.error}") from result.error
    ret = result.return_value or {}
    outcome = SFTOutcome(ret.get("status", "unknown"), run_name, ret.get("step", 0), ret.get("history", []),
                         ret.get("resumed_from", []), checkpoint_path=result.checkpoint.path if result.checkpoint else None)
    if outcome.status == "failed":
        raise TrainingFailed(f"run {run_name}: {ret.get('reason')}; not retried (fix the config, then use a new run name)")
    if outcome.status == "completed" and result.checkpoint is not None:
        outcome.output_dir = publish_output(cfg, result.checkpoint, run_name, storage, cfg_hash, manifest, resolved, ret)
    return outcome


def publish_output(cfg: SFTConfig, checkpoint, run_name: str, storage: str, cfg_hash: str, manifest, resolved, ret) -> Path:
    """Copy the final adapter (or full model) out of the last checkpoint, add lineage, loss curve and MLflow artifacts."""
    from app.train.reporting import plot_loss_curve

    kind = "model" if cfg.method == "full" else "adapter"
    out = Path(cfg.output.dir).expanduser() if cfg.output.dir else Path(storage) / run_name / kind
    with checkpoint.as_directory() as folder:
        if out.exists():
            shutil.rmtree(out)
        shutil.copytree(Path(folder) / kind, out)
    history = ret.get("history", [])
    last = history[-1] if history else {}
    write_lineage(
        out,
        base_model_source=cfg.model.source,
        base_sha=resolved.base_sha,
        dataset_id=manifest.get("id", ""),
        config_hash=cfg_hash,
        method=cfg.method if cfg.train.objective == "sft" else f"cpt-{cfg.method}",
        lora=None if cfg.method == "full" else {"r": cfg.lora.r, "alpha": cfg.lora.alpha, "target_modules": cfg.lora.target_modules},
        metrics={"final_loss": last.get("loss"), "steps": ret.get("step"), "tokens_per_s": last.get("tokens_per_s")},
    )
    png = plot_loss_curve(history, out / "loss_curve.png", title=f"{run_name} loss") if history else None
    if cfg.tracking.enabled and ret.get("tracking_run_id"):
        from app.tracking.mlflow_store import configure_mlflow

        mlflow = configure_mlflow(cfg.tracking)
        with mlflow.start_run(run_id=ret["tracking_run_id"]):
            mlflow.log_artifacts(str(out), artifact_path=kind)
            if png:
                mlflow.log_artifact(str(png))
    return out
