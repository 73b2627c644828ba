"""The adapter registry: register datasets and artifacts with lineage, move stages, resolve what Serve should load.

    reg = Registry("sqlite:///reg.db")            # or postgresql+psycopg://user@host:port/db
    v = reg.register_adapter("acme", "math", "/runs/sft/adapter")   # reads rayalign_lineage.json
    reg.record_eval("acme", "math", v.version, metrics, gate_decision)
    reg.promote("acme", "math", v.version, "production")
    uri, base_sha = reg.resolve("acme", "math", expected_base_sha=loaded_sha)

Every method takes the tenant first and every query filters on it. Stage moves run in one transaction that first
locks the (tenant, name) rows (``SELECT … FOR UPDATE`` on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite); the
partial unique index on production rows is the last line of defence, and a losing racer retries.
"""

from __future__ import annotations

import json
import re
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import fsspec
from sqlalchemy import create_engine, event, func, select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from app.config.common import TrackingSpec
from app.config.paths import rayalign_home
from app.registry.errors import BaseShaMismatch, GateNotPassed, RegistryError
from app.registry.lineage import artifact_kind, read_lineage
from app.registry.schema import (STAGES, Base, BaseModelRecord, BaseScore, DatasetArtifact, ModelArtifact, RunMetric,
                                 StageEvent, TrainingJob)

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
PROMOTABLE = ("staging", "production")


def default_registry_url() -> str:
    return f"sqlite:///{rayalign_home() / 'registry.db'}"


def check_name(kind: str, value: str) -> str:
    """Tenants and artifact names: lowercase slug (no '/', no '..'): safe in URLs, paths and MLflow names."""
    if not isinstance(value, str) or not _NAME.match(value) or ".." in value:
        raise RegistryError(f"invalid {kind} {value!r}: use 1-64 chars of a-z 0-9 . _ - starting with a letter/digit")
    return value


@dataclass(frozen=True)
class ArtifactView:
    """A read-only snapshot of a model artifact row (safe to return from a closed session)."""

    tenant: str
    name: str
    version: int
    kind: str
    stage: str
    uri: str
    base_model_source: str
    base_sha: str
    dataset_id: str
    config_hash: str
    method: str
    lora_r: int | None
    lora_alpha: float | None
    lora_modules: list | None
    train_metrics: dict
    eval_metrics: dict
    gate_passed: bool | None
    gate_report: dict
    needs_reeval: bool
    mlflow_version: str | None
    created_at: str

    @classmethod
    def of(cls, row: ModelArtifact) -> "ArtifactView":
        return cls(row.tenant, row.name, row.version, row.kind, row.stage, row.uri, row.base_model_source,
                   row.base_sha, row.dataset_id, row.config_hash, row.method, row.lora_r, row.lora_alpha,
                   row.lora_modules, dict(row.train_metrics or {}), dict(row.eval_metrics or {}), row.gate_passed,
                   dict(row.gate_report or {}), row.needs_reeval, row.mlflow_version, row.created_at.isoformat())

    @property
    def ref(self) -> str:
        return f"{self.tenant}/{self.name}@v{self.version}"


class Registry:
    """SQLAlchemy-backed registry. ``url``: any SQLAlchemy URL (default: SQLite file under the rayalign home)."""

    def __init__(self, url: str | None = None, *, store_root: str | None = None,
                 mlflow: TrackingSpec | None = None, create: bool = True):
        self.url = url or default_registry_url()
        self.store_root = store_root
        if self.url.startswith("sqlite"):
            self.engine = create_engine(self.url, connect_args={"timeout": 60, "check_same_thread": False})
            serialize_sqlite_writes(self.engine)
        else:
            self.engine = create_engine(self.url, pool_pre_ping=True)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        if create:
            Base.metadata.create_all(self.engine)
        self._mirror = None
        if mlflow is not None and mlflow.enabled:
            from app.registry.mlflow_mirror import MlflowMirror

            self._mirror = MlflowMirror(mlflow)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _tx(self) -> Iterator[Session]:
        with self._sessions() as session, session.begin():
            yield session

    # ---------------------------------------------------------------- datasets, base models, scores
    def register_dataset(self, tenant: str, uri: str) -> dict[str, Any]:
        """Record a dataset artifact folder (reads its manifest.json); idempotent per (tenant, manifest id)."""
        check_name("tenant", tenant)
        fs, path = fsspec.core.url_to_fs(uri)
        manifest_path = path.rstrip("/") + "/manifest.json"
        if not fs.exists(manifest_path):
            raise RegistryError(f"{uri}/manifest.json: missing (not a dataset artifact folder)")
        with fs.open(manifest_path, "r") as fh:
            try:
                manifest = json.load(fh)
            except json.JSONDecodeError as exc:
                raise RegistryError(f"{uri}/manifest.json: invalid JSON at line {exc.lineno}: {exc.msg}") from None
        for key in ("id", "record_type"):
            if not manifest.get(key):
                raise RegistryError(f"{uri}/manifest.json: field '{key}' is required")
        rows = int(sum((manifest.get("splits") or {}).values()) or manifest.get("rows_accepted") or 0)
        with self._tx() as s:
            row = s.scalar(select(DatasetArtifact).where(DatasetArtifact.tenant == tenant,
                                                         DatasetArtifact.artifact_id == manifest["id"]))
            if row is None:
                row = DatasetArtifact(tenant=tenant, artifact_id=manifest["id"], uri=uri,
                                      record_type=manifest["record_type"], rows=rows, manifest=manifest)
                s.add(row)
        return {"tenant": tenant, "id": manifest["id"], "uri": row.uri, "record_type": row.record_type, "rows": rows}

    def get_dataset(self, tenant: str, dataset_id: str) -> dict[str, Any] | None:
        with self._tx() as s:
            row = s.scalar(select(DatasetArtifact).where(DatasetArtifact.tenant == tenant,
                                                         DatasetArtifact.artifact_id == dataset_id))
            return None if row is None else {"id": row.artifact_id, "uri": row.uri, "record_type": row.record_type,
                                             "rows": row.rows, "manifest": row.manifest}

    def register_base(self, tenant: str, source: str, sha: str) -> list[ArtifactView]:
        """Record the current weights SHA of a base model source; returns the live artifacts that need re-eval.

        Live artifacts (not archived) built on the same source with another SHA are flagged ``needs_reeval``.
        """
        check_name("tenant", tenant)
        with self._tx() as s:
            known = s.scalar(select(BaseModelRecord).where(BaseModelRecord.tenant == tenant,
                                                           BaseModelRecord.source == source,
                                                           BaseModelRecord.sha == sha))
            if known is None:
                s.add(BaseModelRecord(tenant=tenant, source=source, sha=sha))
            stale = s.scalars(select(ModelArtifact).where(
                ModelArtifact.tenant == tenant, ModelArtifact.base_model_source == source,
                ModelArtifact.base_sha != sha, ModelArtifact.stage != "archived").order_by(ModelArtifact.id)).all()
            for row in stale:
                row.needs_reeval = True
            return [ArtifactView.of(r) for r in stale]

    def base_shas(self, tenant: str, source: str) -> list[str]:
        with self._tx() as s:
            return list(s.scalars(select(BaseModelRecord.sha).where(
                BaseModelRecord.tenant == tenant, BaseModelRecord.source == source).order_by(BaseModelRecord.id)))

    def base_score(self, tenant: str, base_sha: str, benchmark: str) -> float | None:
        with self._tx() as s:
            return s.scalar(select(BaseScore.value).where(BaseScore.tenant == tenant, BaseScore.base_sha == base_sha,
                                                          BaseScore.benchmark == benchmark))

    def store_base_score(self, tenant: str, base_sha: str, benchmark: str, value: float) -> None:
        check_name("tenant", tenant)
        try:
            with self._tx() as s:
                s.add(BaseScore(tenant=tenant, base_sha=base_sha, benchmark=benchmark, value=float(value)))
        except IntegrityError:
            pass  # stored already (first writer wins: the reference must not drift)

    # ---------------------------------------------------------------- artifacts
    def register_adapter(self, tenant: str, name: str, uri: str) -> ArtifactView:
        """Register the next version of ``name`` from an adapter/model folder; lineage from rayalign_lineage.json.

        With ``store_root`` set, the folder is first copied to ``<store_root>/<tenant>/<name>/v<version>``
        (any fsspec target: local path or s3://) and that copy is what gets recorded.
        """
        check_name("tenant", tenant)
        check_name("name", name)
        uri = str(Path(uri).resolve()) if "://" not in uri else uri
        lineage = read_lineage(uri)
        kind = artifact_kind(uri)
        lora = lineage.get("lora") or {}
        for attempt in range(20):
            try:
                with self._tx() as s:
                    version = (s.scalar(select(func.max(ModelArtifact.version)).where(
                        ModelArtifact.tenant == tenant, ModelArtifact.name == name)) or 0) + 1
                    stored_uri = self._store_copy(uri, tenant, name, version)
                    job = TrainingJob(tenant=tenant, method=lineage["method"], config_hash=lineage["config_hash"],
                                      dataset_id=lineage["dataset_id"], base_sha=lineage["base_sha"])
                    s.add(job)
                    s.flush()
                    row = ModelArtifact(
                        tenant=tenant, name=name, version=version, kind=kind, uri=stored_uri,
                        base_model_source=lineage["base_model_source"], base_sha=lineage["base_sha"],
                        dataset_id=lineage["dataset_id"], config_hash=lineage["config_hash"],
                        method=lineage["method"], lora_r=lora.get("r"), lora_alpha=lora.get("alpha"),
                        lora_modules=list(lora.get("target_modules") or []) or None,
                        train_metrics=lineage.get("metrics", {}), training_job_id=job.id,
                        needs_reeval=self._base_drifted(s, tenant, lineage),
                    )
                    s.add(row)
                    s.flush()
                    for key, value in (lineage.get("metrics") or {}).items():
                        if isinstance(value, (int, float)):
                            s.add(RunMetric(tenant=tenant, artifact_id=row.id, source="train", key=key,
                                            value=float(value)))
                    view = ArtifactView.of(row)
                break
            except IntegrityError:  # two registrations raced for the same version number
                time.sleep(0.01 * (attempt + 1))
        else:
            raise RegistryError(f"{tenant}/{name}: could not allocate a version (too much contention)")
        if self._mirror is not None and "://" not in view.uri:
            mv = self._mirror.log_version(tenant, name, view.uri, lineage)
            with self._tx() as s:
                self._row(s, tenant, name, view.version).mlflow_version = mv
            view = self.show(tenant, name, view.version)
        return view

    def _store_copy(self, uri: str, tenant: str, name: str, version: int) -> str:
        if not self.store_root:
            return uri
        dest = f"{self.store_root.rstrip('/')}/{tenant}/{name}/v{version}"
        src_fs, src_path = fsspec.core.url_to_fs(uri)
        dst_fs, dst_path = fsspec.core.url_to_fs(dest)
        for file in src_fs.find(src_path):
            rel = file[len(src_path.rstrip("/")) + 1:]
            with src_fs.open(file, "rb") as fin, dst_fs.open(f"{dst_path}/{rel}", "wb") as fout:
                fout.write(fin.read())
        return dest

    @staticmethod
    def _base_drifted(s: Session, tenant: str, lineage: dict) -> bool:
        shas = s.scalars(select(BaseModelRecord.sha).where(
            BaseModelRecord.tenant == tenant, BaseModelRecord.source == lineage["base_model_source"])
            .order_by(BaseModelRecord.id.desc())).first()
        return shas is not None and shas != lineage["base_sha"]

    def _row(self, s: Session, tenant: str, name: str, version: int, lock: bool = False) -> ModelArtifact:
        q = select(ModelArtifact).where(ModelArtifact.tenant == tenant, ModelArtifact.name == name,
                                        ModelArtifact.version == int(version))
        row = s.scalar(q.with_for_update() if lock else q)
        if row is None:
            raise RegistryError(f"no artifact {tenant}/{name}@v{version}")
        return row

    def show(self, tenant: str, name: str, version: int) -> ArtifactView:
        with self._tx() as s:
            return ArtifactView.of(self._row(s, tenant, name, version))

    def list(self, tenant: str, name: str | None = None, stage: str | None = None) -> list[ArtifactView]:
        check_name("tenant", tenant)
        q = select(ModelArtifact).where(ModelArtifact.tenant == tenant)
        if name:
            q = q.where(ModelArtifact.name == name)
        if stage:
            q = q.where(ModelArtifact.stage == stage)
        with self._tx() as s:
            return [ArtifactView.of(r) for r in s.scalars(q.order_by(ModelArtifact.name, ModelArtifact.version))]

    def lineage(self, tenant: str, name: str, version: int) -> dict[str, Any]:
        """The full lineage of one version: artifact, its dataset, base model SHAs, metrics and stage history."""
        with self._tx() as s:
            row = self._row(s, tenant, name, version)
            dataset = s.scalar(select(DatasetArtifact).where(DatasetArtifact.tenant == tenant,
                                                             DatasetArtifact.artifact_id == row.dataset_id))
            events = s.scalars(select(StageEvent).where(StageEvent.tenant == tenant, StageEvent.artifact_id == row.id)
                               .order_by(StageEvent.id)).all()
            metrics = s.scalars(select(RunMetric).where(RunMetric.tenant == tenant, RunMetric.artifact_id == row.id)
                                .order_by(RunMetric.id)).all()
            return {
                "artifact": ArtifactView.of(row).__dict__,
                "dataset": None if dataset is None else {"id": dataset.artifact_id, "uri": dataset.uri,
                                                         "record_type": dataset.record_type, "rows": dataset.rows},
                "metrics": [{"source": m.source, "key": m.key, "value": m.value} for m in metrics],
                "history": [{"from": e.from_stage, "to": e.to_stage, "reason": e.reason, "at": e.at.isoformat()}
                            for e in events],
            }

    def record_eval(self, tenant: str, name: str, version: int, metrics: dict[str, float],
                    decision: dict[str, Any], report_dir: str | None = None) -> ArtifactView:
        """Store eval metrics and the gate decision (``GateDecision.to_dict()``) on the artifact (+ MLflow)."""
        if "passed" not in decision:
            raise RegistryError("gate decision must carry 'passed'")
        with self._tx() as s:
            row = self._row(s, tenant, name, version, lock=True)
            row.eval_metrics = {k: float(v) for k, v in metrics.items()}
            row.gate_passed = bool(decision["passed"])
            row.gate_report = decision
            row.needs_reeval = False
            for key, value in metrics.items():
                s.add(RunMetric(tenant=tenant, artifact_id=row.id, source="eval", key=key, value=float(value)))
            view = ArtifactView.of(row)
        if self._mirror is not None and view.mlflow_version:
            self._mirror.log_eval(tenant, name, view.mlflow_version, view.eval_metrics, report_dir)
        return view

    # ---------------------------------------------------------------- stages
    def promote(self, tenant: str, name: str, version: int, stage: str = "production") -> ArtifactView:
        """Move a version to ``staging`` or ``production``; only gate-passing, non-stale artifacts may move.

        Promoting to production archives the current production (reason ``superseded``) in the same transaction.
        """
        if stage not in PROMOTABLE:
            raise RegistryError(f"cannot promote to {stage!r}; stages: {', '.join(PROMOTABLE)} (use archive())")

        def move(s: Session) -> ArtifactView:
            rows = self._lock_name(s, tenant, name)
            row = next((r for r in rows if r.version == int(version)), None)
            if row is None:
                raise RegistryError(f"no artifact {tenant}/{name}@v{version}")
            if row.gate_passed is not True:
                why = "never evaluated" if row.gate_passed is None else f"failed: {row.gate_report.get('reason', '')}"
                raise GateNotPassed(f"{tenant}/{name}@v{version} cannot move to {stage}: eval gates {why}")
            if row.needs_reeval:
                raise GateNotPassed(f"{tenant}/{name}@v{version} cannot move to {stage}: base model changed since "
                                    "its evaluation; re-run `rayalign eval` first")
            if row.stage == stage:
                return ArtifactView.of(row)
            if stage == "production":
                for other in rows:
                    if other.stage == "production":
                        self._move(s, other, "archived", "superseded")
                s.flush()
            self._move(s, row, stage, "promote")
            return ArtifactView.of(row)

        view = self._with_retry(move)
        self._sync_alias(view)
        return view

    def rollback(self, tenant: str, name: str) -> ArtifactView:
        """Archive the current production and bring back the previous one (the last one it superseded).

        A version that left production by rollback is never brought back by a later rollback.
        """
        def move(s: Session) -> ArtifactView:
            rows = {r.id: r for r in self._lock_name(s, tenant, name)}
            current = next((r for r in rows.values() if r.stage == "production"), None)
            if current is None:
                raise RegistryError(f"{tenant}/{name}: nothing in production to roll back")
            events = s.scalars(select(StageEvent).where(StageEvent.tenant == tenant,
                                                        StageEvent.artifact_id.in_(list(rows)))
                               .order_by(StageEvent.id.desc())).all()
            rolled_back = {e.artifact_id for e in events if e.reason == "rollback" and e.from_stage == "production"}
            target = next((rows[e.artifact_id] for e in events
                           if e.reason == "superseded" and e.artifact_id != current.id
                           and e.artifact_id not in rolled_back and rows[e.artifact_id].stage == "archived"), None)
            if target is None:
                raise RegistryError(f"{tenant}/{name}: no previous production version to roll back to")
            self._move(s, current, "archived", "rollback")
            s.flush()
            self._move(s, target, "production", "restore")
            return ArtifactView.of(target)

        view = self._with_retry(move)
        self._sync_alias(view)
        return view

    def archive(self, tenant: str, name: str, version: int) -> ArtifactView:
        def move(s: Session) -> ArtifactView:
            self._lock_name(s, tenant, name)
            row = self._row(s, tenant, name, version)
            if row.stage != "archived":
                self._move(s, row, "archived", "archive")
            return ArtifactView.of(row)

        view = self._with_retry(move)
        if self._mirror is not None:
            for alias in ("staging", "production"):
                if self._mirror.alias_version(tenant, name, alias) == view.mlflow_version:
                    self._mirror.clear_alias(tenant, name, alias)
        return view

    def resolve(self, tenant: str, name: str, alias: str = "production",
                expected_base_sha: str | None = None) -> tuple[str, str]:
        """(uri, base_sha) of the version Serve should load: ``alias`` is a stage or ``v<N>``.

        With ``expected_base_sha`` (the SHA of the base weights actually loaded), a mismatch raises
        ``BaseShaMismatch`` instead of serving an adapter on weights it was not trained for.
        """
        check_name("tenant", tenant)
        check_name("name", name)
        q = select(ModelArtifact).where(ModelArtifact.tenant == tenant, ModelArtifact.name == name)
        if alias in PROMOTABLE:
            q = q.where(ModelArtifact.stage == alias).order_by(ModelArtifact.version.desc())
        elif re.fullmatch(r"v\d+", alias):
            q = q.where(ModelArtifact.version == int(alias[1:]))
        else:
            raise RegistryError(f"unknown alias {alias!r}: use staging, production or v<N>")
        with self._tx() as s:
            row = s.scalars(q).first()
            if row is None:
                raise RegistryError(f"{tenant}/{name}: nothing at @{alias}")
            if expected_base_sha is not None and row.base_sha != expected_base_sha:
                raise BaseShaMismatch(f"{tenant}/{name}@v{row.version} was trained on base {row.base_sha[:12]} "
                                      f"but the loaded base is {expected_base_sha[:12]}: refusing to serve it")
            return row.uri, row.base_sha

    # ---------------------------------------------------------------- internals
    def _lock_name(self, s: Session, tenant: str, name: str) -> list[ModelArtifact]:
        check_name("tenant", tenant)
        check_name("name", name)
        return list(s.scalars(select(ModelArtifact).where(ModelArtifact.tenant == tenant, ModelArtifact.name == name)
                              .order_by(ModelArtifact.version).with_for_update()))

    @staticmethod
    def _move(s: Session, row: ModelArtifact, to: str, reason: str) -> None:
        assert to in STAGES
        s.add(StageEvent(tenant=row.tenant, artifact_id=row.id, from_stage=row.stage, to_stage=to, reason=reason))
        row.stage = to

    def _with_retry(self, fn, attempts: int = 20):
        for attempt in range(attempts):
            try:
                with self._tx() as s:
                    return fn(s)
            except (IntegrityError, OperationalError) as exc:  # lost a race (unique index / lock timeout): retry
                last = exc
                time.sleep(0.01 * (attempt + 1))
        raise RegistryError(f"stage change failed after {attempts} attempts: {last.__class__.__name__}")

    def _sync_alias(self, view: ArtifactView) -> None:
        if self._mirror is None or not view.mlflow_version:
            return
        if view.stage in ("staging", "production"):
            self._mirror.set_alias(view.tenant, view.name, view.stage, view.mlflow_version)


def serialize_sqlite_writes(engine) -> None:
    """pysqlite's deferred BEGIN lets two writers deadlock on upgrade; take the write lock up front instead."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None
        dbapi_connection.execute("PRAGMA journal_mode=WAL")
        dbapi_connection.execute("PRAGMA foreign_keys=ON")

    @event.listens_for(engine, "begin")
    def _begin(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE")
