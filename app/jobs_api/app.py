"""The fine-tuning job API (FastAPI), served on Ray Serve by ``deployment()`` or by uvicorn in-process.

    POST /v1/files?filename=x.jsonl          raw JSONL/Parquet body, streamed, size-bounded  -> {id, rows, status}
    GET  /v1/files[/{id}]                    status uploaded -> ingesting -> processed (dataset_id) | error
    POST /v1/fine-tuning/jobs                {base_model, training_file, method, hyperparameters, ...}
                                             (header Idempotency-Key: a repeat returns the first job)
    GET  /v1/fine-tuning/jobs[/{id}]         status, step, loss, tokens_per_sec, checkpoint_path
    POST /v1/fine-tuning/jobs/{id}/cancel    GET /v1/fine-tuning/jobs/{id}/events
    GET  /v1/models                          POST /v1/models/{id}/deploy

Every route needs ``Authorization: Bearer <key>``; every read is filtered by the key's tenant, so another tenant's
job or model answers 404 exactly like a missing one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi.responses import JSONResponse

from app.config.paths import rayalign_home
from app.config.pipeline import JobsAPIConfig
from app.jobs_api.requests import CreateJob
from app.jobs_api.runner import JobRunner
from app.jobs_api.states import JobStatus
from app.jobs_api.store import JobStore
from app.registry.store import Registry
from app.serve.auth import KeyRing
from app.serve.errors import Unauthorized
from app.jobs_api.uploads import UploadInvalid, UploadTooLarge, store_upload

JOB_VIEW = ("id", "status", "method", "step", "loss", "tokens_per_sec", "checkpoint_path", "fine_tuned_model",
            "attempts", "error", "created_at", "updated_at")


def job_view(job: dict[str, Any]) -> dict[str, Any]:
    out = {k: job[k] for k in JOB_VIEW}
    out.update(object="fine_tuning.job", job_id=job["id"], base_model=job["request"]["base_model"],
               training_file=job["request"]["training_file"], hyperparameters=job["request"]["hyperparameters"])
    return out


def file_view(row: dict[str, Any], purpose: str = "fine-tune") -> dict[str, Any]:
    """OpenAI's file object plus what ingestion found: status uploaded -> ingesting -> processed (dataset_id) | error."""
    return {"id": row["id"], "object": "file", "filename": row["filename"], "bytes": row["bytes"], "rows": row["rows"],
            "sha256": row["sha256"], "purpose": purpose, "status": row["status"], "record_type": row["record_type"],
            "dataset_id": row["dataset_id"], "status_details": row["status_details"], "created_at": row["created_at"]}


def build_app(cfg: JobsAPIConfig | dict | None = None, run_scheduler: bool = True) -> FastAPI:
    """The ASGI app; with ``run_scheduler`` it also starts the thread that runs jobs on Ray."""
    cfg = cfg if isinstance(cfg, JobsAPIConfig) else JobsAPIConfig.model_validate(cfg or {})
    store = JobStore(cfg.db_url)
    registry = Registry(store.url)
    keys = KeyRing.from_specs(cfg.tenants)  # the serving app's auth: same keys, same tenants
    files_dir = Path(cfg.files_dir) if cfg.files_dir else rayalign_home() / "files"
    runner = JobRunner(cfg, store)
    app = FastAPI(title="rayalign fine-tuning API", version="1")
    app.state.store, app.state.runner, app.state.cfg = store, runner, cfg

    @app.middleware("http")
    async def bound_json_bodies(request: Request, call_next):
        # uploads are bounded while streaming (below); everything else is small JSON
        length = request.headers.get("content-length")
        if request.url.path != "/v1/files" and length and int(length) > cfg.max_body_kb * 1024:
            return JSONResponse({"detail": f"request body over {cfg.max_body_kb} KiB"}, status_code=413)
        return await call_next(request)

    def tenant(authorization: str | None = Header(None)) -> str:
        try:
            return keys.authenticate(authorization)
        except Unauthorized as exc:
            raise HTTPException(401, str(exc), headers={"WWW-Authenticate": "Bearer"}) from None

    def own_job(job_id: str, who: str) -> dict[str, Any]:
        job = store.get_job(who, job_id)
        if job is None:
            raise HTTPException(404, f"job {job_id!r} not found")
        return job

    @app.post("/v1/files")
    async def upload_file(request: Request, filename: str = Query(..., max_length=128),
                          purpose: str = Query("fine-tune", pattern="^fine-tune$"), who: str = Depends(tenant)):
        max_bytes = int(cfg.max_upload_mb * 1024 * 1024)
        length = request.headers.get("content-length")
        if length and int(length) > max_bytes:
            raise HTTPException(413, f"upload over {cfg.max_upload_mb} MiB")
        try:
            stored = await store_upload(request.stream(), filename, files_dir / who, max_bytes)
        except UploadTooLarge as exc:
            raise HTTPException(413, str(exc)) from None
        except UploadInvalid as exc:
            raise HTTPException(422, [{"loc": ["body"], "msg": str(exc), "type": "value_error"}]) from None
        # stored and well-formed; the scheduler now ingests it (a Ray job) -> status processed + dataset_id
        row = store.add_file(who, stored.file_id, filename=filename, format=stored.format, path=str(stored.path),
                             bytes=stored.bytes, sha256=stored.sha256, rows=stored.rows, status="uploaded")
        return file_view(row, purpose)

    @app.get("/v1/files")
    def list_files(who: str = Depends(tenant), limit: int = Query(20, ge=1, le=100)):
        return {"object": "list", "data": [file_view(f) for f in store.list_files(who, limit=limit)]}

    @app.get("/v1/files/{file_id}")
    def get_file(file_id: str, who: str = Depends(tenant)):
        row = store.get_file(who, file_id)
        if row is None:
            raise HTTPException(404, f"file {file_id!r} not found")
        return file_view(row)

    @app.post("/v1/fine-tuning/jobs")
    def create_job(body: CreateJob, who: str = Depends(tenant),
                   idempotency_key: str | None = Header(None, max_length=256)):
        for key in ("training_file", "validation_file"):
            file_id = getattr(body, key)
            if file_id and store.get_file(who, file_id) is None:
                raise HTTPException(422, [{"loc": ["body", key], "msg": f"file {file_id!r} not found",
                                           "type": "value_error"}])
        if body.method == "ppo":
            check_reward_source(registry, who, body)
        job, created = store.create_job(who, body.method, body.model_dump(mode="json"), idempotency_key)
        return JSONResponse(job_view(job), status_code=201 if created else 200)

    @app.get("/v1/fine-tuning/jobs")
    def list_jobs(who: str = Depends(tenant), limit: int = Query(20, ge=1, le=100)):
        return {"object": "list", "data": [job_view(j) for j in store.list_jobs(who, limit=limit)]}

    @app.get("/v1/fine-tuning/jobs/{job_id}")
    def get_job(job_id: str, who: str = Depends(tenant)):
        return job_view(own_job(job_id, who))

    @app.post("/v1/fine-tuning/jobs/{job_id}/cancel")
    def cancel_job(job_id: str, who: str = Depends(tenant)):
        job = own_job(job_id, who)
        if JobStatus(job["status"]) in {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED}:
            raise HTTPException(409, f"job {job_id!r} is already {job['status']}")
        return job_view(store.request_cancel(who, job_id))

    @app.get("/v1/fine-tuning/jobs/{job_id}/events")
    def job_events(job_id: str, who: str = Depends(tenant), after: int = Query(0, ge=0)):
        own_job(job_id, who)
        return {"object": "list", "data": store.list_events(job_id, after)}

    @app.get("/v1/models")
    def list_models(who: str = Depends(tenant), base_model: str | None = Query(None, max_length=96)):
        return {"object": "list", "data": tenant_models(registry, who, base_model)}

    @app.post("/v1/models/{model_id}/deploy")
    def deploy_model(model_id: str, who: str = Depends(tenant)):
        model = next((m for m in tenant_models(registry, who, None) if m["id"] == model_id), None)
        if model is None:
            raise HTTPException(404, f"model {model_id!r} not found")
        return deploy(registry, model, who)

    if run_scheduler:
        runner.start()
    return app


def tenant_models(registry, tenant: str, base_model: str | None) -> list[dict[str, Any]]:
    """The tenant's registered adapters (newest version per name), optionally only those on one base model."""
    latest: dict[str, Any] = {}
    for view in registry.list(tenant):
        if base_model and view.base_model_source != base_model:
            continue
        if view.name not in latest or view.version > latest[view.name].version:
            latest[view.name] = view
    return [{"id": v.name, "object": "model", "owned_by": tenant, "version": v.version, "stage": v.stage,
             "base_model": v.base_model_source, "method": v.method, "gate_passed": v.gate_passed,
             "created_at": v.created_at} for v in latest.values()]


def check_reward_source(registry, tenant: str, body: CreateJob) -> None:
    """A ppo job needs a reward: a reward model the tenant registered (a method 'reward' job) or a rule; else a 422."""
    if not body.reward_model and not body.reward_rule:
        raise HTTPException(422, [{"loc": ["body", "reward_model"], "type": "value_error",
                                   "msg": "method 'ppo' needs a reward source: set reward_model (your registered "
                                          "reward model) or reward_rule"}])
    if body.reward_model:
        model = next((m for m in tenant_models(registry, tenant, None) if m["id"] == body.reward_model), None)
        if model is None or model["method"] != "reward":
            raise HTTPException(422, [{"loc": ["body", "reward_model"], "type": "value_error",
                                       "msg": f"{body.reward_model!r} is not one of your registered reward models"}])
        if model["base_model"] != body.base_model:
            raise HTTPException(422, [{"loc": ["body", "reward_model"], "type": "value_error",
                                       "msg": f"reward model {body.reward_model!r} was trained on {model['base_model']}, "
                                              f"not on base_model {body.base_model}"}])


def deploy(registry, model: dict[str, Any], tenant: str) -> dict[str, Any]:
    """Promote the model's newest version to production: the serving app resolves `production` per request."""
    from app.registry.errors import RegistryError

    try:
        view = registry.promote(tenant, model["id"], model["version"], "production")
    except RegistryError as exc:  # e.g. gates not passed: the caller's to fix, not a server error
        raise HTTPException(409, str(exc)) from None
    return {"id": view.name, "object": "model", "owned_by": tenant, "version": view.version, "stage": view.stage}


def deployment(cfg: JobsAPIConfig):
    """The Ray Serve application: one replica running the FastAPI app and the job-runner thread.

    The app is built on the replica (a builder, not a pickled app) so the store and the runner thread live there.
    """
    from ray import serve

    settings = cfg.model_dump(mode="json")

    def build() -> FastAPI:  # a plain function: Serve calls builders on the replica (a partial would be the app)
        return build_app(settings)

    @serve.deployment(name="JobsAPI", num_replicas=1, ray_actor_options={"num_cpus": 0})
    @serve.ingress(build)
    class JobsAPI:
        pass

    return JobsAPI.bind()


def run_on_serve(cfg: JobsAPIConfig, blocking: bool) -> str:
    """Deploy the API on the connected Ray cluster's Serve (HTTP on cfg.host:cfg.port); returns the base URL."""
    from ray import serve

    serve.start(http_options={"host": cfg.host, "port": cfg.port})
    serve.run(deployment(cfg), name="rayalign-jobs-api", route_prefix=cfg.route_prefix, blocking=blocking)
    return f"http://{cfg.host}:{cfg.port}{cfg.route_prefix.rstrip('/')}"
