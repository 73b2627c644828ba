"""The job store: fine-tuning jobs, their events and uploaded files, in the registry's SQL database.

SQLite by default (``sqlite:///<home>/registry.db``), Postgres by URL. Every read takes the tenant, so one tenant
can never see another's rows (a foreign id reads exactly like a missing one). Status changes go through
``app.jobs_api.states.transition`` inside a transaction that holds the write lock from its first read (SQLite
``BEGIN IMMEDIATE``, PostgreSQL ``SELECT … FOR UPDATE``, as the registry does), so two writers can never both move
a job out of the same state.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from app.jobs_api.states import InvalidTransition, JobStatus, is_terminal, transition
from app.registry.schema import Base
from app.registry.store import default_registry_url, serialize_sqlite_writes

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
    sa.Column("priority", sa.String(8), nullable=True),  # high | normal | low (scheduler classes, with aging)
    sa.Column("finished_at", sa.String(32), nullable=True),
    sa.Column("registry_name", sa.String(128), nullable=True),  # the adapter the job registered …
    sa.Column("registry_version", sa.Integer, nullable=True),  # … and its version (what its ft: id serves)
    sa.Column("usage", sa.Text, nullable=True),  # JSON: cpu/gpu seconds, tokens trained, estimated cost
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
    sa.Column("purpose", sa.String(32), nullable=True),
)

checkpoints = sa.Table(
    "ft_checkpoints",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("job_id", sa.String(40), sa.ForeignKey("ft_jobs.id"), nullable=False, index=True),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.Column("step", sa.Integer, nullable=False),
    sa.Column("loss", sa.Float, nullable=True),
    sa.Column("path", sa.Text, nullable=False),
)

JOB_FIELDS = ("step", "loss", "tokens_per_sec", "checkpoint_path", "adapter_path", "fine_tuned_model",
              "ray_submission_id", "attempts", "reported", "error", "finished_at", "registry_name",
              "registry_version", "usage")


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
        if self.url.startswith("sqlite"):
            serialize_sqlite_writes(self.engine)
        metadata.create_all(self.engine)
        add_missing_columns(self.engine, (jobs, files))

    # jobs -------------------------------------------------------------------------------------------------------
    def create_job(self, tenant: str, method: str, request: dict[str, Any], idempotency_key: str | None = None,
                   priority: str = "normal") -> tuple[dict[str, Any], bool]:
        """Insert a queued job; with an idempotency key already used by this tenant, return that job instead."""
        if idempotency_key:
            existing = self._by_key(tenant, idempotency_key)
            if existing:
                return existing, False
        job_id = "ftjob-" + uuid.uuid4().hex[:20]
        now = _now()
        row = dict(id=job_id, tenant=tenant, idempotency_key=idempotency_key, method=method,
                   request=json.dumps(request, sort_keys=True), status=JobStatus.QUEUED.value, step=0, attempts=0,
                   cancel_requested=False, created_at=now, updated_at=now, priority=priority)
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
            return self._apply(conn, job_id, event, message, fields)

    def _apply(self, conn, job_id: str, event: str, message: str, fields: dict[str, Any]) -> JobStatus:
        """The transition inside an open transaction whose write lock is already held (BEGIN IMMEDIATE / FOR UPDATE)."""
        row = conn.execute(sa.select(jobs.c.status).where(jobs.c.id == job_id).with_for_update()).first()
        if row is None:
            raise KeyError(job_id)
        new = transition(row.status, event)
        if is_terminal(new):
            fields = {**fields, "finished_at": _now()}
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
            if fields.get("checkpoint_path"):
                known = conn.execute(sa.select(checkpoints.c.seq).where(
                    checkpoints.c.job_id == job_id, checkpoints.c.path == str(fields["checkpoint_path"]))).first()
                if known is None:
                    conn.execute(checkpoints.insert().values(job_id=job_id, created_at=_now(),
                                                             step=int(fields.get("step") or 0), loss=fields.get("loss"),
                                                             path=str(fields["checkpoint_path"])))
            conn.execute(jobs.update().where(jobs.c.id == job_id).values(updated_at=_now(), **fields))

    def request_cancel(self, tenant: str, job_id: str) -> dict[str, Any] | None:
        """Mark a job for cancellation; a queued one is cancelled at once, a live one when its Ray job stops."""
        with self.engine.begin() as conn:  # one locked transaction: the scheduler cannot start it meanwhile
            row = conn.execute(sa.select(jobs.c.status).where(jobs.c.id == job_id, jobs.c.tenant == tenant)
                               .with_for_update()).first()
            if row is None:
                return None
            conn.execute(jobs.update().where(jobs.c.id == job_id).values(cancel_requested=True, updated_at=_now()))
            if row.status in (JobStatus.QUEUED.value, JobStatus.PREEMPTED.value):
                self._apply(conn, job_id, "cancel", "before it started", {})
        return self.get_job(tenant, job_id)

    def claim(self, job_id: str, message: str, **fields: Any) -> bool:
        """queued → running with the Ray submission id written *before* anything is submitted; False when the job
        was cancelled (or started) in the meantime — then nothing may be submitted for it."""
        try:
            self.apply(job_id, "start", message, **fields)
        except InvalidTransition:
            return False
        return True

    # events -----------------------------------------------------------------------------------------------------
    def add_event(self, job_id: str, kind: str, message: str, data: dict[str, Any] | None = None) -> None:
        with self.engine.begin() as conn:
            conn.execute(events.insert().values(job_id=job_id, created_at=_now(), kind=kind, message=message,
                                                data=json.dumps(data, default=str) if data else None))

    def list_events(self, job_id: str, after: int = 0, *, before: int | None = None, limit: int | None = None,
                    newest_first: bool = False) -> list[dict[str, Any]]:
        """Events by sequence number: oldest first after ``after``, or (``newest_first``) newest first below ``before``."""
        query = sa.select(events).where(events.c.job_id == job_id)
        if newest_first:
            if before is not None:
                query = query.where(events.c.seq < before)
            query = query.order_by(events.c.seq.desc())
        else:
            query = query.where(events.c.seq > after).order_by(events.c.seq)
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(query)]
        for r in rows:
            r["data"] = json.loads(r["data"]) if r["data"] else None
        return rows

    def list_checkpoints(self, job_id: str, before: int | None = None, limit: int = 10) -> list[dict[str, Any]]:
        """The job's checkpoints, newest first (below sequence ``before``)."""
        query = sa.select(checkpoints).where(checkpoints.c.job_id == job_id)
        if before is not None:
            query = query.where(checkpoints.c.seq < before)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query.order_by(checkpoints.c.seq.desc()).limit(limit))]

    def count_jobs(self, tenant: str, statuses: set[JobStatus]) -> int:
        query = sa.select(sa.func.count()).select_from(jobs).where(
            jobs.c.tenant == tenant, jobs.c.status.in_([s.value for s in statuses]))
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar() or 0)

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

    def delete_file(self, tenant: str, file_id: str) -> dict[str, Any] | None:
        """Remove the tenant's file row (the caller deletes the bytes); None when it is not theirs."""
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(files).where(files.c.id == file_id, files.c.tenant == tenant)).first()
            if row is None:
                return None
            conn.execute(files.delete().where(files.c.id == file_id))
        return dict(row._mapping)

    def stored_bytes(self, tenant: str) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.coalesce(sa.func.sum(files.c.bytes), 0))
                                    .where(files.c.tenant == tenant)).scalar() or 0)


def add_missing_columns(engine, tables) -> None:
    """Columns added since a database was created (``create_all`` never alters a table): ALTER TABLE … ADD COLUMN."""
    inspector = sa.inspect(engine)
    for table in tables:
        have = {c["name"] for c in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name not in have:
                kind = column.type.compile(dialect=engine.dialect)
                with engine.begin() as conn:
                    conn.exec_driver_sql(f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {kind}')
