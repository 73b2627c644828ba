"""Per-step training figures to MLflow (rank 0) and to Ray metrics (``rayalign_train_*``, dashboard/Prometheus),
plus the loss-curve PNG. Shared by every train loop.
"""

from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path
from typing import Any

from app.tracking.tracker import flatten_params  # noqa: F401  (re-exported for the loops)

log = logging.getLogger(__name__)

# "1": keep Ray Train's per-report INFO line in the worker (``quiet_ray_report_log``). The driver sets it for the workers
# (app/launch/trainer.py::worker_env): "1" under ``-v`` (root logger at DEBUG) or when its own environment says so.
RAY_REPORT_LOG_ENV = "RAYALIGN_RAY_REPORT_LOG"


def quiet_ray_report_log() -> bool:
    """Drop Ray Train's INFO line "Reporting training result N: …" in this worker unless ``RAYALIGN_RAY_REPORT_LOG=1``;
    True when it was dropped. Its warnings (lines 307 and 480 of the same module) still show.

    Ray 2.60 Train V2 logs that line for every ``ray.train.report`` (``_wait_then_report`` in
    ``ray/train/v2/_internal/execution/context.py``) through ``logging.getLogger(__file__)``: a logger named by the
    file's path, so it is not under ``ray.train`` and ``RunConfig(logging_config=…)`` cannot filter it. It reaches the
    worker's root logger, which Ray Train points at its JSON log file and the console, and from there log_monitor
    ships it to the driver, which prints it (into the command's log file): a line a second at ``log_every`` 10 on
    0.1 s steps, on the cores the training threads need (``benchmarks/train_overhead.py``)."""
    if os.environ.get(RAY_REPORT_LOG_ENV, "0") == "1":
        return False
    try:
        from ray.train.v2._internal.execution import context
    except ImportError:  # another Ray layout: leave its logging alone
        return False
    logger = getattr(context, "logger", None)
    if not isinstance(logger, logging.Logger):
        return False
    logger.setLevel(logging.WARNING)
    return True


RAY_GAUGES = ("loss", "grad_norm", "lr", "tokens_per_s", "mfu", "step")
GAUGE_EVERY_S = 1.0  # Prometheus scrapes every few seconds: gauges set once a second at most, not every step


class StepReporter:
    """Rank-0 sink for per-step metrics. ``tracking_uri`` None disables MLflow; Ray gauges are always set."""

    def __init__(self, run_name: str, tracking_uri: str | None, experiment: str, params: dict[str, Any], run_id: str | None,
                 parent_run_id: str | None = None):
        from ray.util.metrics import Gauge

        self.gauges = {k: Gauge(f"rayalign_train_{k}", description=f"rayalign training {k}", tag_keys=("run",)) for k in RAY_GAUGES}
        self.tags = {"run": run_name}
        self._gauges_set_at = -math.inf
        self.mlflow = None
        self.run_id = run_id
        if tracking_uri:
            import mlflow

            mlflow.set_tracking_uri(tracking_uri)
            if mlflow.get_experiment_by_name(experiment) is None:
                mlflow.create_experiment(experiment)
            mlflow.set_experiment(experiment)
            tags = {"mlflow.parentRunId": parent_run_id} if parent_run_id and run_id is None else None
            run = mlflow.start_run(run_id=run_id, run_name=None if run_id else run_name, tags=tags)
            self.run_id = run.info.run_id
            if run_id is None:
                mlflow.log_params(params)
            self.mlflow = mlflow

    def log(self, metrics: dict[str, float], step: int, last: bool = False) -> None:
        """MLflow: every call; Ray gauges: at most once per GAUGE_EVERY_S, and always on the ``last`` step."""
        now = time.monotonic()
        if last or now - self._gauges_set_at >= GAUGE_EVERY_S:
            self._gauges_set_at = now
            for key, gauge in self.gauges.items():
                if key in metrics:
                    gauge.set(float(metrics[key]), tags=self.tags)
        if self.mlflow is not None:
            numbers = {k: float(v) for k, v in metrics.items()
                       if k not in ("step", "wall_start") and isinstance(v, (int, float)) and math.isfinite(v)}
            self.mlflow.log_metrics(numbers, step=step)

    def close(self, status: str) -> None:
        if self.mlflow is not None:
            self.mlflow.end_run(status="FINISHED" if status == "completed" else "KILLED" if status == "preempted" else "FAILED")


def plot_loss_curve(history: list[dict[str, float]], path: Path, title: str = "training loss") -> Path:
    """Loss (and lr on a twin axis) against step, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [h["step"] for h in history]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(steps, [h["loss"] for h in history], label="loss", color="tab:blue")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax2 = ax.twinx()
    ax2.plot(steps, [h["lr"] for h in history], label="lr", color="tab:orange", alpha=0.5)
    ax2.set_ylabel("learning rate")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
