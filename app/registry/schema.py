"""Registry tables (SQLAlchemy 2 ORM): datasets, base models, training jobs, model artifacts, metrics, stage history.

Every row carries a ``tenant``; every query in ``app.registry.store`` filters on it. The invariant "at most one
production artifact per (tenant, name)" is enforced by the database itself with a partial unique index
(SQLite and PostgreSQL both support ``CREATE UNIQUE INDEX … WHERE stage = 'production'``).
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import (JSON, Boolean, CheckConstraint, DateTime, Float, ForeignKey, Index, Integer, String,
                        UniqueConstraint, text)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

STAGES = ("dev", "staging", "production", "archived")
KINDS = ("adapter", "full")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    pass


class DatasetArtifact(Base):
    """A dataset artifact (folder with manifest.json) as produced by the data pipeline."""

    __tablename__ = "dataset_artifacts"
    __table_args__ = (UniqueConstraint("tenant", "artifact_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    artifact_id: Mapped[str] = mapped_column(String(128), nullable=False)
    uri: Mapped[str] = mapped_column(String(1024), nullable=False)
    record_type: Mapped[str] = mapped_column(String(32), nullable=False)
    rows: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    manifest: Mapped[dict] = mapped_column(JSON, nullable=False, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)


class BaseModelRecord(Base):
    """A base model weights SHA seen for a source; a new SHA for a known source is base-model drift."""

    __tablename__ = "base_models"
    __table_args__ = (UniqueConstraint("tenant", "source", "sha"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    source: Mapped[str] = mapped_column(String(512), nullable=False)
    sha: Mapped[str] = mapped_column(String(64), nullable=False)
    registered_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)


class BaseScore(Base):
    """A benchmark score of a base model (by SHA): the stored reference for regression gates."""

    __tablename__ = "base_scores"
    __table_args__ = (UniqueConstraint("tenant", "base_sha", "benchmark"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    base_sha: Mapped[str] = mapped_column(String(64), nullable=False)
    benchmark: Mapped[str] = mapped_column(String(256), nullable=False)
    value: Mapped[float] = mapped_column(Float, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)


class TrainingJob(Base):
    """One training run that produced (or will produce) a model artifact."""

    __tablename__ = "training_jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    method: Mapped[str] = mapped_column(String(32), nullable=False)
    config_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    dataset_id: Mapped[str] = mapped_column(String(128), nullable=False)
    base_sha: Mapped[str] = mapped_column(String(64), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="finished")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)


class ModelArtifact(Base):
    """An adapter (or full model) version with its complete lineage, eval results and lifecycle stage."""

    __tablename__ = "model_artifacts"
    __table_args__ = (
        UniqueConstraint("tenant", "name", "version"),
        CheckConstraint("stage IN ('dev','staging','production','archived')", name="ck_stage"),
        CheckConstraint("kind IN ('adapter','full')", name="ck_kind"),
        Index("uq_one_production", "tenant", "name", unique=True,
              sqlite_where=text("stage = 'production'"), postgresql_where=text("stage = 'production'")),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    name: Mapped[str] = mapped_column(String(128), nullable=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False, default="adapter")
    uri: Mapped[str] = mapped_column(String(1024), nullable=False)
    base_model_source: Mapped[str] = mapped_column(String(512), nullable=False)
    base_sha: Mapped[str] = mapped_column(String(64), nullable=False)
    dataset_id: Mapped[str] = mapped_column(String(128), nullable=False)
    config_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    method: Mapped[str] = mapped_column(String(32), nullable=False)
    lora_r: Mapped[int | None] = mapped_column(Integer, nullable=True)
    lora_alpha: Mapped[float | None] = mapped_column(Float, nullable=True)
    lora_modules: Mapped[list | None] = mapped_column(JSON, nullable=True)
    train_metrics: Mapped[dict] = mapped_column(JSON, nullable=False, default=dict)
    eval_metrics: Mapped[dict] = mapped_column(JSON, nullable=False, default=dict)
    gate_passed: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    gate_report: Mapped[dict] = mapped_column(JSON, nullable=False, default=dict)
    needs_reeval: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    stage: Mapped[str] = mapped_column(String(16), nullable=False, default="dev")
    training_job_id: Mapped[int | None] = mapped_column(ForeignKey("training_jobs.id"), nullable=True)
    mlflow_version: Mapped[str | None] = mapped_column(String(32), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)


class RunMetric(Base):
    """One metric value attached to a model artifact (training curve points or eval results)."""

    __tablename__ = "run_metrics"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    artifact_id: Mapped[int] = mapped_column(ForeignKey("model_artifacts.id"), nullable=False, index=True)
    source: Mapped[str] = mapped_column(String(16), nullable=False)  # "train" | "eval"
    key: Mapped[str] = mapped_column(String(128), nullable=False)
    value: Mapped[float] = mapped_column(Float, nullable=False)
    step: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)


class StageEvent(Base):
    """Stage history: every transition, with why (``promote``, ``superseded``, ``rollback``, ``archive``)."""

    __tablename__ = "stage_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    artifact_id: Mapped[int] = mapped_column(ForeignKey("model_artifacts.id"), nullable=False, index=True)
    from_stage: Mapped[str] = mapped_column(String(16), nullable=False)
    to_stage: Mapped[str] = mapped_column(String(16), nullable=False)
    reason: Mapped[str] = mapped_column(String(16), nullable=False)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)
