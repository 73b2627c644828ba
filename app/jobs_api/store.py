"""The job store: fine-tuning jobs, their events and uploaded files, in the registry's SQL database.

SQLite by default (``sqlite:///<home>/registry.db``), Postgres by URL. Every read takes the tenant, so one tenant
can never see another's rows (a foreign id reads exactly like a missing one). Status changes go through
``app.jobs_api.states.transition`` inside a transaction, so two writers cannot race a job into an illegal state.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from app.jobs_api.states import JobStatus, transition
from app.registry.schema import Base
from app.registry.store import default_registry_url

# the job tables live in the registry's metadata: one database, one engine, one `create_all`
metadata = Base.metadata

jobs = sa.Table(
    "ft_jobs",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("tenant", sa.String(128), nullable=False, index=True),
    sa.Column("idempotency_key", sa.String(256), nullable=True),
    sa.Column("method", sa.String(16), nullable=False),
    sa.Column("request", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("step", sa.Integer, nullable=False, default=0),
    sa.Column("loss", sa.Float, nullable=True),
    sa.Column("tokens_per_sec", sa.Float, nullable=True),
    sa.Column("checkpoint_path", sa.Text, nullable=True),
    sa.Column("adapter_path", sa.Text, nullable=True),
    sa.Column("fine_tuned_model", sa.String(256), nullable=True),
    sa.Column("ray_submission_id", sa.String(128), nullable=True),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("reported", sa.String(16), nullable=True),
    sa.Column("cancel_requested", sa.Boolean, nullable=False, default=False),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.Column("updated_at", sa.String(32), nullable=False),
    sa.UniqueConstraint("tenant", "idempotency_key", name="uq_ft_jobs_tenant_idem"),
)

events = sa.Table(
    "ft_job_events",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("job_id", sa.String(40), sa.ForeignKey("ft_jobs.id"), nullable=False, index=True),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("data", sa.Text, nullable=True),
)

files = sa.Table(
    "ft_files",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("tenant", sa.String(128), nullable=False, index=True),
    sa.Column("filename", sa.String(256), nullable=False),
    sa.Column("format", sa.String(16), nullable=False),
    sa.Column("path", sa.Text, nullable=False),
    sa.Column("bytes", sa.Integer, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("rows", sa.Integer, nullable=False),
    sa.Column("dataset_id", sa.String(128), nullable=True),
    sa.Column("status", sa.String(16), nullable=False),  # uploaded -> ingesting -> processed | error
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.Column("record_type", sa.String(16), nullable=True),
    sa.Column("ingest_job", sa.String(64), nullable=True),  # Ray submission id of the ingestion job
    sa.Column("dataset_path", sa.Text, nullable=True),
    sa.Column("status_details", sa.Text, nullable=True),  # ingestion summary, or why it failed
)

JOB_FIELDS = ("step", "loss", "tokens_per_sec", "checkpoint_path", "adapter_path", "fine_tuned_model",
              "ray_submission_id", "attempts", "reported", "error")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _job_dict(row: sa.Row) -> dict[str, Any]:
    out = dict(row._mapping)
    out["request"] = json.loads(out["request"])
    return out


class JobStore:
    """Jobs, events and files; one instance per process, safe to share between threads."""

    def __init__(self, db_url: str | None = None):
        self.url = db_url or default_registry_url()
        args = {"connect_args": {"timeout": 30, "check_same_thread": False}} if self.url.startswith("sqlite") else {}
        self.engine = sa.create_engine(self.url, **args)
        metadata.create_all(self.engine)

    # jobs -------------------------------------------------------------------------------------------------------
    def create_job(self, tenant: str, method: str, request: dict[str, Any], idempotency_key: str | None = None
                   ) -> tuple[dict[str, Any], bool]:
        """Insert a queued job; with an idempotency key already used by this tenant, return that job instead."""
        if idempotency_key:
            existing = self._by_key(tenant, idempotency_key)
            if existing:
                return existing, False
        job_id = "ftjob-" + uuid.uuid4().hex[:20]
        now = _now()
        row = dict(id=job_id, tenant=tenant, idempotency_key=idempotency_key, method=method,
                   request=json.dumps(request, sort_keys=True), status=JobStatus.QUEUED.value, step=0, attempts=0,
                   cancel_requested=False, created_at=now, updated_at=now)
        try:
            with self.engine.begin() as conn:
                conn.execute(jobs.insert().values(**row))
                conn.execute(events.insert().values(job_id=job_id, created_at=now, kind="status",
                                                    message="queued", data=None))
        except IntegrityError:  # a concurrent request with the same key won the race
            existing = self._by_key(tenant, idempotency_key or "")
            if existing is None:
                raise
            return existing, False
        return self.get_job(tenant, job_id), True

    def _by_key(self, tenant: str, key: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(jobs).where(jobs.c.tenant == tenant, jobs.c.idempotency_key == key)).first()
        return _job_dict(row) if row else None

    def get_job(self, tenant: str | None, job_id: str) -> dict[str, Any] | None:
        """The job, or None when it does not exist or belongs to another tenant (tenant None: any, for the runner)."""
        query = sa.select(jobs).where(jobs.c.id == job_id)
        if tenant is not None:
            query = query.where(jobs.c.tenant == tenant)
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return _job_dict(row) if row else None

    def list_jobs(self, tenant: str | None = None, statuses: set[JobStatus] | None = None, limit: int = 100
                  ) -> list[dict[str, Any]]:
        query = sa.select(jobs).order_by(jobs.c.created_at.desc()).limit(limit)
        if tenant is not None:
            query = query.where(jobs.c.tenant == tenant)
        if statuses:
            query = query.where(jobs.c.status.in_([s.value for s in statuses]))
        with self.engine.connect() as conn:
            return [_job_dict(r) for r in conn.execute(query)]

    def apply(self, job_id: str, event: str, message: str = "", **fields: Any) -> JobStatus:
        """Move a job through ``event`` (validated by the state machine), update fields, log the event."""
        bad = set(fields) - set(JOB_FIELDS)
        if bad:
            raise ValueError(f"unknown job fields: {sorted(bad)}")
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(jobs.c.status).where(jobs.c.id == job_id)).first()
            if row is None:
                raise KeyError(job_id)
            new = transition(row.status, event)
            conn.execute(jobs.update().where(jobs.c.id == job_id).values(status=new.value, updated_at=_now(), **fields))
            conn.execute(events.insert().values(job_id=job_id, created_at=_now(), kind="status",
                                                message=f"{new.value}" + (f": {message}" if message else ""),
                                                data=json.dumps(fields, default=str) if fields else None))
        return new

    def update(self, job_id: str, **fields: Any) -> None:
        """Update progress fields (step, loss, tokens/s, checkpoint path …) without a status change."""
        bad = set(fields) - set(JOB_FIELDS)
        if bad:
            raise ValueError(f"unknown job fields: {sorted(bad)}")
        with self.engine.begin() as conn:
            conn.execute(jobs.update().where(jobs.c.id == job_id).values(updated_at=_now(), **fields))

    def request_cancel(self, tenant: str, job_id: str) -> dict[str, Any] | None:
        """Mark a job for cancellation; a queued one is cancelled at once, a live one when its Ray job stops."""
        job = self.get_job(tenant, job_id)
        if job is None:
            return None
        with self.engine.begin() as conn:
            conn.execute(jobs.update().where(jobs.c.id == job_id).values(cancel_requested=True, updated_at=_now()))
        if job["status"] in (JobStatus.QUEUED.value, JobStatus.PREEMPTED.value):
            self.apply(job_id, "cancel", "before it started")
        return self.get_job(tenant, job_id)

    # events -----------------------------------------------------------------------------------------------------
    def add_event(self, job_id: str, kind: str, message: str, data: dict[str, Any] | None = None) -> None:
        with self.engine.begin() as conn:
            conn.execute(events.insert().values(job_id=job_id, created_at=_now(), kind=kind, message=message,
                                                data=json.dumps(data, default=str) if data else None))

    def list_events(self, job_id: str, after: int = 0) -> list[dict[str, Any]]:
        query = sa.select(events).where(events.c.job_id == job_id, events.c.seq > after).order_by(events.c.seq)
        with self.engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(query)]
        for r in rows:
            r["data"] = json.loads(r["data"]) if r["data"] else None
        return rows

    # files ------------------------------------------------------------------------------------------------------
    def add_file(self, tenant: str, file_id: str, **fields: Any) -> dict[str, Any]:
        with self.engine.begin() as conn:
            conn.execute(files.insert().values(id=file_id, tenant=tenant, created_at=_now(), **fields))
        return self.get_file(tenant, file_id)

    def get_file(self, tenant: str, file_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(files).where(files.c.id == file_id, files.c.tenant == tenant)).first()
        return dict(row._mapping) if row else None

    def list_files(self, tenant: str | None = None, statuses: set[str] | None = None,
                   limit: int = 100) -> list[dict[str, Any]]:
        """Newest first; ``tenant=None`` lists every tenant's (the runner's view)."""
        query = sa.select(files).order_by(files.c.created_at.desc()).limit(limit)
        if tenant is not None:
            query = query.where(files.c.tenant == tenant)
        if statuses:
            query = query.where(files.c.status.in_(sorted(statuses)))
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def update_file(self, file_id: str, **fields: Any) -> None:
        with self.engine.begin() as conn:
            conn.execute(files.update().where(files.c.id == file_id).values(**fields))
