"""An MLflow run driven through the client API (no global "active run"): sweep parents and their children.

Moved here from app/train/preference.py so the sweep driver (app/launch/tune.py) does not import a training loop.
Per-step training metrics go through app/train/reporting.py (StepReporter), which uses ``flatten_params`` too.
"""

from __future__ import annotations

import math
import time
from typing import Any

from app.config.common import TrackingSpec


def flatten_params(data: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested config → flat ``a.b.c: value`` strings (MLflow params are flat and ≤6000 chars)."""
    out: dict[str, str] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten_params(value, name + "."))
        else:
            out[name] = str(value)[:6000]
    return out


class MlflowTracker:
    """One MLflow run (a child of ``parent_run_id`` when given): flat config params, metrics by step."""

    def __init__(self, spec: TrackingSpec, run_name: str, params: dict[str, Any], parent_run_id: str | None = None):
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        from app.tracking.mlflow_store import configure_mlflow

        mlflow = configure_mlflow(spec)
        self.client = MlflowClient()
        self.experiment_id = mlflow.get_experiment_by_name(spec.experiment).experiment_id
        tags = {"mlflow.parentRunId": parent_run_id} if parent_run_id else {}
        self.run_id = self.client.create_run(self.experiment_id, run_name=run_name, tags=tags).info.run_id
        items = [Param(k, v[:5000]) for k, v in flatten_params(params).items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[i : i + 100])

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        rows = [Metric(k, float(v), now, step) for k, v in metrics.items() if isinstance(v, (int, float)) and math.isfinite(v)]
        self.client.log_batch(self.run_id, metrics=rows)

    def close(self, status: str = "FINISHED") -> None:
        self.client.set_terminated(self.run_id, status)
