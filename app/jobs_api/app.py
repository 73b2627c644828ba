"""The fine-tuning job API in OpenAI's shapes (FastAPI), served on Ray Serve by ``deployment()`` or uvicorn in-process.

    POST   /v1/files                            multipart ``file`` + ``purpose=fine-tune`` (OpenAI chat / DPO JSONL,
                                                rayalign's formats, Parquet); streamed to disk under max_upload_mb
    GET    /v1/files[/{id}]   DELETE /v1/files/{id}           (cursor paging: after, limit, order)
    POST   /v1/fine_tuning/jobs                 {model, training_file, method: {type, <type>: {hyperparameters}}, …}
                                                (header Idempotency-Key: a repeat returns the first job)
    GET    /v1/fine_tuning/jobs[/{id}]          POST /v1/fine_tuning/jobs/{id}/cancel
    GET    /v1/fine_tuning/jobs/{id}/events     GET /v1/fine_tuning/jobs/{id}/checkpoints   (after + has_more)
    GET    /v1/models                           POST /v1/models/{id}/deploy | /promote | /rollback  (registry)
    GET    /v1/usage                            the tenant's jobs' resources and estimated cost

Every route needs ``Authorization: Bearer <key>`` (checked before the body is read, ``app.jobs_api.guard``); every
read is filtered by the key's tenant, so another tenant's job, file or model answers 404 like a missing one.
Errors are OpenAI's shape (``app.jobs_api.errors``); there is no /docs and no /openapi.json.
``/v1/fine-tuning/jobs`` (rayalign's first body: base_model + a string method) stays as an alias for old clients.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.responses import JSONResponse

from app.config.paths import rayalign_home
from app.config.pipeline import JobsAPIConfig
from app.jobs_api import errors
from app.jobs_api.errors import APIError, bad_request, not_found
from app.jobs_api.guard import Guard
from app.jobs_api.models_routes import add_model_routes
from app.jobs_api.openai_jobs import CreateFineTuningJob, internal_request
from app.jobs_api.requests import CreateJob
from app.jobs_api.runner import JobRunner
from app.jobs_api.states import JobStatus
from app.jobs_api.store import JobStore
from app.jobs_api.uploads import UploadInvalid, UploadTooLarge, file_chunks, guess_record_type, store_upload
from app.jobs_api.views import checkpoint_view, event_view, file_view, job_view, page
from app.registry.store import Registry
from app.serve.auth import KeyRing

log = logging.getLogger(__name__)
NEEDS = {"sft": "sft", "dpo": "preference"}  # method -> record type its training file must have


def tenant(request: Request) -> str:
    return request.state.tenant  # set by the Guard middleware, which already refused unauthenticated calls


def build_app(cfg: JobsAPIConfig | dict | None = None, run_scheduler: bool = True) -> FastAPI:
    """The ASGI app; with ``run_scheduler`` it also starts the thread that runs jobs on Ray."""
    cfg = cfg if isinstance(cfg, JobsAPIConfig) else JobsAPIConfig.model_validate(cfg or {})
    store = JobStore(cfg.db_url)
    registry = Registry(store.url)
    keys = KeyRing.from_specs(cfg.tenants)  # the serving app's auth: same keys, same tenants
    files_dir = Path(cfg.files_dir) if cfg.files_dir else rayalign_home() / "files"
    runner = JobRunner(cfg, store)
    app = FastAPI(title="rayalign fine-tuning API", version="1", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.store, app.state.runner, app.state.cfg = store, runner, cfg
    errors.install(app)
    app.add_middleware(Guard, keys=keys, json_limit=cfg.max_body_kb * 1024,
                       upload_limit=int(cfg.max_upload_mb * 1024 * 1024) + 64 * 1024)  # + multipart framing

    def quota(who: str):
        return cfg.quotas.get(who, cfg.default_quota)

    def own_job(job_id: str, who: str) -> dict[str, Any]:
        job = store.get_job(who, job_id)
        if job is None:
            raise not_found("fine_tuning_job_id", f"fine-tuning job {job_id!r} not found")
        return job

    # ---- files -----------------------------------------------------------------------------------------------
    async def _store(chunks, filename: str, who: str, purpose: str) -> dict[str, Any]:
        max_bytes = int(cfg.max_upload_mb * 1024 * 1024)
        try:
            stored = await store_upload(chunks, filename, files_dir / who, max_bytes)
        except UploadTooLarge:
            raise APIError(413, f"file: larger than this API's limit of {cfg.max_upload_mb} MiB", param="file") from None
        except UploadInvalid as exc:
            raise bad_request("file", str(exc)) from None
        limit = quota(who).max_stored_mb
        if limit is not None and store.stored_bytes(who) + stored.bytes > limit * 1024 * 1024:
            stored.path.unlink(missing_ok=True)
            raise APIError(429, f"file: storing it would exceed your quota of {limit} MB of uploads; delete files "
                                "(DELETE /v1/files/{id}) first", param="file", retry_after_s=cfg.retry_after_s)
        try:
            record_type = guess_record_type(stored.path, stored.format)
        except Exception:  # noqa: BLE001 - counted rows already proved it parses; the ingest job decides later
            record_type = None
        row = store.add_file(who, stored.file_id, filename=filename, format=stored.format, path=str(stored.path),
                             bytes=stored.bytes, sha256=stored.sha256, rows=stored.rows, status="uploaded",
                             record_type=record_type, purpose=purpose)
        return file_view(row)

    @app.post("/v1/files")
    async def upload_file(request: Request, who: str = Depends(tenant),
                          filename: str | None = Query(None, max_length=128)):
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            if not filename:  # rayalign's raw-body form: POST /v1/files?filename=x.jsonl
                raise bad_request("file", "send multipart/form-data with 'file' and 'purpose' (as the openai SDK does)")
            return await _store(request.stream(), filename, who, "fine-tune")
        form = await request.form(max_files=1, max_fields=4)
        try:
            extra = sorted(set(form.keys()) - {"file", "purpose"})
            if extra:  # e.g. expires_after: accepted-and-ignored would be a lie
                raise bad_request(extra[0], "not supported by this API (send only 'file' and 'purpose')")
            purpose, upload = form.get("purpose"), form.get("file")
            if purpose != "fine-tune":
                raise bad_request("purpose", f"{purpose!r} is not supported here; use 'fine-tune'")
            if upload is None or isinstance(upload, str):
                raise bad_request("file", "a file part named 'file' is required")
            return await _store(file_chunks(upload), Path(upload.filename or "upload.jsonl").name, who, purpose)
        finally:
            await form.close()

    @app.get("/v1/files")
    def list_files(who: str = Depends(tenant), after: str | None = Query(None, max_length=64),
                   limit: int = Query(20, ge=1, le=10_000), order: str = Query("desc", pattern="^(asc|desc)$"),
                   purpose: str | None = Query(None, max_length=32)):
        rows = store.list_files(who, limit=100_000)
        rows = [r for r in rows if purpose is None or (r.get("purpose") or "fine-tune") == purpose]
        rows.sort(key=lambda r: (r["created_at"], r["id"]), reverse=order == "desc")
        if after:
            ids = [r["id"] for r in rows]
            rows = rows[ids.index(after) + 1:] if after in ids else []
        return page([file_view(r) for r in rows[: limit + 1]], limit)

    @app.get("/v1/files/{file_id}")
    def get_file(file_id: str, who: str = Depends(tenant)):
        row = store.get_file(who, file_id)
        if row is None:
            raise not_found("file_id", f"file {file_id!r} not found")
        return file_view(row)

    @app.delete("/v1/files/{file_id}")
    def delete_file(file_id: str, who: str = Depends(tenant)):
        row = store.delete_file(who, file_id)
        if row is None:
            raise not_found("file_id", f"file {file_id!r} not found")
        Path(row["path"]).unlink(missing_ok=True)
        return {"id": file_id, "object": "file", "deleted": True}

    # ---- jobs ------------------------------------------------------------------------------------------------
    def _training_file(who: str, file_id: str, param: str) -> dict[str, Any]:
        row = store.get_file(who, file_id)
        if row is None:
            raise not_found(param, f"{param}: file {file_id!r} not found")
        if (row.get("purpose") or "fine-tune") != "fine-tune":
            raise bad_request(param, f"file {file_id!r} has purpose {row['purpose']!r}, not 'fine-tune'")
        return row

    def _queue(who: str, request: dict[str, Any], idempotency_key: str | None) -> JSONResponse:
        limit = quota(who).max_queued_jobs
        if limit is not None and store.count_jobs(who, {JobStatus.QUEUED, JobStatus.PREEMPTED}) >= limit:
            if not (idempotency_key and store._by_key(who, idempotency_key)):
                raise APIError(429, f"you have {limit} jobs waiting, your quota; retry when one has started",
                               param=None, retry_after_s=cfg.retry_after_s)
        job, created = store.create_job(who, request["method"], request, idempotency_key,
                                        priority=request.get("priority") or "normal")
        if created and request.get("openai", {}).get("integrations"):
            store.add_event(job["id"], "warning", "integrations are not supported by rayalign and were ignored: "
                            + ", ".join(request["openai"]["integrations"]))
        return JSONResponse(job_view(store.get_job(who, job["id"])))  # OpenAI answers 200; a repeat key too

    @app.post("/v1/fine_tuning/jobs")
    def create_job(body: CreateFineTuningJob, who: str = Depends(tenant),
                   idempotency_key: str | None = Header(None, max_length=256)):
        train = _training_file(who, body.training_file, "training_file")
        if body.validation_file:
            _training_file(who, body.validation_file, "validation_file")
        request = internal_request(body, train["rows"])
        need = NEEDS.get(request["method"])
        if need and train.get("record_type") and train["record_type"] != need:
            raise bad_request("training_file", f"holds {train['record_type']} records; method "
                              f"{body.method and body.method.get('type') or 'supervised'!r} needs {need} records")
        if request["method"] == "ppo":
            check_reward_source(registry, who, request)
        return _queue(who, request, idempotency_key)

    @app.post("/v1/fine-tuning/jobs")  # rayalign's first job body (base_model + string method): old clients
    def create_job_legacy(body: CreateJob, who: str = Depends(tenant),
                          idempotency_key: str | None = Header(None, max_length=256)):
        for key in ("training_file", "validation_file"):
            if getattr(body, key):
                _training_file(who, getattr(body, key), key)
        request = body.model_dump(mode="json")
        if body.method == "ppo":
            check_reward_source(registry, who, request)
        return _queue(who, request, idempotency_key)

    @app.get("/v1/fine_tuning/jobs")
    @app.get("/v1/fine-tuning/jobs")
    def list_jobs(request: Request, who: str = Depends(tenant), after: str | None = Query(None, max_length=64),
                  limit: int = Query(20, ge=1, le=100)):
        rows = store.list_jobs(who, limit=100_000)
        wanted = {k[len("metadata["):-1]: v for k, v in request.query_params.items()
                  if k.startswith("metadata[") and k.endswith("]")}  # OpenAI's metadata filter
        if wanted:
            rows = [j for j in rows if all(((j["request"].get("openai") or {}).get("metadata") or {}).get(k) == v
                                           for k, v in wanted.items())]
        rows.sort(key=lambda j: (j["created_at"], j["id"]), reverse=True)
        if after:
            ids = [j["id"] for j in rows]
            rows = rows[ids.index(after) + 1:] if after in ids else []
        return page([job_view(j) for j in rows[: limit + 1]], limit)

    @app.get("/v1/fine_tuning/jobs/{job_id}")
    @app.get("/v1/fine-tuning/jobs/{job_id}")
    def get_job(job_id: str, who: str = Depends(tenant)):
        return job_view(own_job(job_id, who))

    @app.post("/v1/fine_tuning/jobs/{job_id}/cancel")
    @app.post("/v1/fine-tuning/jobs/{job_id}/cancel")
    def cancel_job(job_id: str, who: str = Depends(tenant)):
        job = own_job(job_id, who)
        if JobStatus(job["status"]) in {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED}:
            raise APIError(409, f"fine-tuning job {job_id!r} is already {job['status']}", param="fine_tuning_job_id")
        return job_view(store.request_cancel(who, job_id))

    def _cursor(after: str | None, prefix: str) -> int | None:
        if after is None:
            return None
        if not after.startswith(prefix) or not after[len(prefix):].isdigit():
            raise bad_request("after", f"must be an id from a previous page ({prefix}<n>)")
        return int(after[len(prefix):])

    @app.get("/v1/fine_tuning/jobs/{job_id}/events")
    @app.get("/v1/fine-tuning/jobs/{job_id}/events")
    def job_events(job_id: str, who: str = Depends(tenant), after: str | None = Query(None, max_length=40),
                   limit: int = Query(20, ge=1, le=1000)):
        own_job(job_id, who)
        rows = store.list_events(job_id, before=_cursor(after, "ftevent-"), limit=limit + 1, newest_first=True)
        return page([event_view(r) for r in rows], limit)

    @app.get("/v1/fine_tuning/jobs/{job_id}/checkpoints")
    def job_checkpoints(job_id: str, who: str = Depends(tenant), after: str | None = Query(None, max_length=40),
                        limit: int = Query(10, ge=1, le=100)):
        job = own_job(job_id, who)
        rows = store.list_checkpoints(job_id, before=_cursor(after, "ftckpt-"), limit=limit + 1)
        return page([checkpoint_view(r, job) for r in rows], limit)

    @app.get("/v1/usage")
    def usage(who: str = Depends(tenant)):
        from app.jobs_api.usage import tenant_usage

        return tenant_usage(store.list_jobs(who, limit=100_000))

    add_model_routes(app, registry, store, tenant)
    if run_scheduler:
        runner.start()
    return app


def check_reward_source(registry, tenant: str, req: dict[str, Any]) -> None:
    """A reinforcement (ppo) job needs a reward: a registered reward model of the tenant or a rule; else a 400."""
    param = "method.reinforcement.grader" if "openai" in req else "reward_model"
    if not req.get("reward_model") and not req.get("reward_rule"):
        raise bad_request(param, "a reinforcement (ppo) job needs a reward source: set reward_model (your registered "
                                 "reward model) or reward_rule")
    if req.get("reward_model"):
        from app.jobs_api.models_routes import tenant_models

        model = next((m for m in tenant_models(registry, tenant, None) if m["id"] == req["reward_model"]), None)
        if model is None or model["method"] != "reward":
            raise bad_request(param, f"{req['reward_model']!r} is not one of your registered reward models")
        if model["base_model"] != req["base_model"]:
            raise bad_request(param, f"reward model {req['reward_model']!r} was trained on {model['base_model']}, "
                                     f"not on {req['base_model']}")


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
