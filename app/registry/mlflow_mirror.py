"""Mirror registry versions and stages to the MLflow model registry (``models:/<tenant>.<name>@production``).

MLflow can only register a *logged model*, not a plain folder: each adapter is logged as a pyfunc model whose
artifact is the adapter folder, then registered; stages become aliases ``@staging`` / ``@production``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from app.config.common import TrackingSpec
from app.tracking.mlflow_store import configure_mlflow

ALIASES = ("staging", "production")


def _adapter_model_class():
    import mlflow.pyfunc

    class AdapterArtifact(mlflow.pyfunc.PythonModel):
        """A registry handle for a LoRA adapter folder; Serve loads the folder itself (``artifacts['adapter']``)."""

        def load_context(self, context):
            self.path = context.artifacts["adapter"]

        def predict(self, context, model_input, params=None):
            return [self.path for _ in range(len(model_input))]

    return AdapterArtifact


class MlflowMirror:
    """Log + register artifact versions and move stage aliases in MLflow."""

    def __init__(self, tracking: TrackingSpec):
        self.mlflow = configure_mlflow(tracking)
        from mlflow import MlflowClient

        self.client = MlflowClient()

    @staticmethod
    def model_name(tenant: str, name: str) -> str:
        return f"{tenant}.{name}"

    def log_version(self, tenant: str, name: str, local_dir: str, lineage: dict[str, Any]) -> str:
        """Log the folder as a model in a run tagged with its lineage, register it; returns the MLflow version."""
        mlflow = self.mlflow
        with mlflow.start_run(run_name=f"register-{tenant}-{name}"):
            mlflow.set_tags({f"lineage.{k}": str(v) for k, v in lineage.items() if k not in ("metrics", "lora")})
            info = mlflow.pyfunc.log_model(
                name="adapter", python_model=_adapter_model_class()(), artifacts={"adapter": str(Path(local_dir))},
                pip_requirements=[], registered_model_name=self.model_name(tenant, name),
            )
        return str(info.registered_model_version)

    def log_eval(self, tenant: str, name: str, version: str, metrics: dict[str, float], report_dir: str | None) -> None:
        mlflow = self.mlflow
        with mlflow.start_run(run_name=f"eval-{tenant}-{name}-v{version}"):
            mlflow.log_metrics({k: float(v) for k, v in metrics.items()})
            if report_dir:
                mlflow.log_artifacts(report_dir, artifact_path="gate_report")
        self.client.set_model_version_tag(self.model_name(tenant, name), version, "gate_evaluated", "true")

    def set_alias(self, tenant: str, name: str, alias: str, version: str) -> None:
        self.client.set_registered_model_alias(self.model_name(tenant, name), alias, version)

    def clear_alias(self, tenant: str, name: str, alias: str) -> None:
        try:
            self.client.delete_registered_model_alias(self.model_name(tenant, name), alias)
        except Exception:  # alias not set: nothing to clear  # noqa: BLE001
            pass

    def alias_version(self, tenant: str, name: str, alias: str) -> str | None:
        try:
            return str(self.client.get_model_version_by_alias(self.model_name(tenant, name), alias).version)
        except Exception:  # noqa: BLE001
            return None
