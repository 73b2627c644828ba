"""Model routes of the job API: the tenant's registered adapters and what Serve answers for them.

    GET  /v1/models                                   newest version per name, its stage, canary share
    POST /v1/models/{name}/deploy    {"version": 2, "traffic_share": 0.1}   production (share 1 / none) or canary
    POST /v1/models/{name}/promote                    the canary becomes production
    POST /v1/models/{name}/rollback                   a canary is dropped; else production goes back one version

Serve's registry resolver reads the same rows per request (cached ~1 s), so each of these changes what the
OpenAI endpoint answers within seconds, without a redeploy; the served version is in each response's
``system_fingerprint``.
"""

from __future__ import annotations

from typing import Any

from fastapi import Depends, FastAPI, Request
from pydantic import BaseModel, ConfigDict, Field

from app.jobs_api.errors import APIError, not_found
from app.registry import rollout


class DeployBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: int | None = Field(None, ge=1, description="version to deploy (default: the newest)")
    traffic_share: float | None = Field(None, gt=0, le=1, description="canary share (1 or none: production)")


def tenant_models(registry, tenant: str, base_model: str | None) -> list[dict[str, Any]]:
    """The tenant's registered adapters (newest version per name), optionally only those on one base model."""
    latest: dict[str, Any] = {}
    for view in registry.list(tenant):
        if base_model and view.base_model_source != base_model:
            continue
        if view.name not in latest or view.version > latest[view.name].version:
            latest[view.name] = view
    out = []
    for v in latest.values():
        route = rollout.routing(registry, tenant, v.name)
        out.append({"id": v.name, "object": "model", "owned_by": tenant, "version": v.version, "stage": v.stage,
                    "base_model": v.base_model_source, "method": v.method, "gate_passed": v.gate_passed,
                    "created_at": v.created_at, "production_version": route.production[0] if route.production else None,
                    "canary": {"version": route.canary[0], "traffic_share": route.canary[2]} if route.canary else None})
    return out


def add_model_routes(app: FastAPI, registry, store, tenant_dep) -> None:
    from app.registry.errors import RegistryError

    def own(name: str, who: str) -> dict[str, Any]:
        model = next((m for m in tenant_models(registry, who, None) if m["id"] == name), None)
        if model is None:
            raise not_found("model", f"model {name!r} not found")
        return model

    def registry_call(fn, *args):
        try:
            return fn(*args)
        except RegistryError as exc:  # e.g. gates not passed: the caller's to fix, not a server error
            raise APIError(409, str(exc), param="model", code="registry_conflict") from None

    def answer(who: str, name: str) -> dict[str, Any]:
        return {**own(name, who), "object": "model.deployment"}

    @app.get("/v1/models")
    def list_models(who: str = Depends(tenant_dep), base_model: str | None = None):
        return {"object": "list", "data": tenant_models(registry, who, base_model)}

    @app.post("/v1/models/{name}/deploy")
    async def deploy_model(name: str, request: Request, who: str = Depends(tenant_dep)):
        from pydantic import ValidationError

        from app.jobs_api.errors import bad_request, field_of

        raw = await request.body()
        try:
            body = DeployBody.model_validate_json(raw) if raw.strip() else DeployBody()
        except ValidationError as exc:
            first = exc.errors()[0]
            raise bad_request(field_of(first["loc"]), first["msg"]) from None
        model = own(name, who)
        registry_call(rollout.deploy, registry, who, name, body.version or model["version"], body.traffic_share)
        return answer(who, name)

    @app.post("/v1/models/{name}/promote")
    def promote_model(name: str, who: str = Depends(tenant_dep)):
        own(name, who)
        registry_call(rollout.promote_canary, registry, who, name)
        return answer(who, name)

    @app.post("/v1/models/{name}/rollback")
    def rollback_model(name: str, who: str = Depends(tenant_dep)):
        own(name, who)
        if not registry_call(rollout.rollback_canary, registry, who, name):
            registry_call(registry.rollback, who, name)
        return answer(who, name)
