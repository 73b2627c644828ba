"""MLflow tracking with embedded defaults: a SQLite store under the rayalign home, any URI by config."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from app.config.common import TrackingSpec
from app.config.paths import rayalign_home


def default_tracking_uri() -> str:
    return f"sqlite:///{rayalign_home() / 'mlflow.db'}"


def tracking_uri(spec: TrackingSpec | None = None) -> str:
    spec = spec or TrackingSpec()
    return spec.mlflow_uri or default_tracking_uri()


def artifact_root() -> Path:
    path = rayalign_home() / "mlartifacts"
    path.mkdir(parents=True, exist_ok=True)
    return path


def configure_mlflow(spec: TrackingSpec | None = None):
    """Point the mlflow client at the configured store and experiment; returns the mlflow module."""
    import mlflow

    spec = spec or TrackingSpec()
    uri = tracking_uri(spec)
    mlflow.set_tracking_uri(uri)
    if mlflow.get_experiment_by_name(spec.experiment) is None:
        location = artifact_root().as_uri() if uri.startswith("sqlite") else None
        mlflow.create_experiment(spec.experiment, artifact_location=location)
    mlflow.set_experiment(spec.experiment)
    return mlflow


def serve_ui(host: str = "127.0.0.1", port: int = 5000, spec: TrackingSpec | None = None) -> int:
    """Run ``mlflow server`` on the rayalign store (blocks until interrupted)."""
    cmd = [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", tracking_uri(spec),
        "--default-artifact-root", artifact_root().as_uri(),
        "--host", host, "--port", str(port),
    ]
    print(f"MLflow UI on http://{host}:{port}  (store: {tracking_uri(spec)})", flush=True)
    return subprocess.call(cmd)
