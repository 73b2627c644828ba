"""The OpenAI-compatible HTTP front door: auth → bounded body → model routing → tokenize → engine → OpenAI JSON/SSE.

Everything a user can get wrong is caught here and answered in the OpenAI error shape (401/404/409/400/413/422);
a full queue or a tenant over its concurrency cap or request rate answers 429 with Retry-After, a request past request_timeout_s
504 (its generation cancelled), and only a failing engine answers 503 — for the requests it was running. The engine sees token ids and a resolved, lineage-checked adapter location.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import ValidationError
from ray import serve

from app.serve.errors import (
    BadRequest, EngineUnavailable, NotFound, PayloadTooLarge, RequestTimeout, ServeError, TooManyRequests, Unprocessable,
)
from app.serve.names import parse_model, served_name_for
from app.serve.protocol import (
    AdapterTarget,
    ChatCompletionRequest,
    CompletionRequest,
    EngineRequest,
    chat_response,
    completion_response,
    new_id,
    parse_json_body,
)
from app.serve.relay import StreamOutcome, cancel, next_chunk, relay_sse

log = logging.getLogger(__name__)
api = FastAPI(title="rayalign OpenAI-compatible API", docs_url=None, redoc_url=None)


def as_serve_error(exc: BaseException) -> ServeError:
    """A ServeError raised here or inside an engine replica (Ray wraps it); a full engine queue is 429; else 503."""
    from ray.serve.exceptions import BackPressureError

    for candidate in (exc, getattr(exc, "cause", None)):
        if isinstance(candidate, ServeError):
            return candidate
        if isinstance(candidate, BackPressureError):
            err = TooManyRequests("the engine's request queue is full; retry later", code="queue_full")
            err.retry_after_s = candidate.retry_after_s or 1
            return err
    log.warning("engine call failed: %s", exc, exc_info=exc)
    return EngineUnavailable(f"engine unavailable: {type(exc).__name__}")


def validation_error(exc: ValidationError) -> Unprocessable:
    """The first pydantic error as a 422 naming the field (``stop``, ``messages.0.content``, ...)."""
    first = exc.errors()[0]
    where = ".".join(map(str, first["loc"])) or "body"
    return Unprocessable(f"{where}: {first['msg']}", param=str(first["loc"][0]) if first["loc"] else None)


def _error(err: ServeError) -> JSONResponse:
    headers = None
    if isinstance(err, TooManyRequests):
        headers = {"Retry-After": str(int(err.retry_after_s))}
        if err.retry_after_ms is not None:
            headers["retry-after-ms"] = str(err.retry_after_ms)
    return JSONResponse(err.body(), status_code=err.status, headers=headers)


COMPLETION_PATHS = ("/v1/chat/completions", "/v1/completions")
_front: list = []  # this process's Ingress replica (set in Ingress.__init__), for the FrontDoor middleware


class FrontDoor:
    """Pure-ASGI middleware in front of FastAPI: a completion request with an unknown key (401) or from a tenant at its
    concurrency cap or over its request rate (429) is answered here from its headers alone — before routing, the Request object, the body read
    and JSON validation. A tenant over its cap (a flood) then costs the ingress a header lookup and a sha256; the
    response is the same as the endpoint's (the endpoint still checks both, for requests that pass here)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and _front and scope.get("method") == "POST" and scope.get("path", "").endswith(COMPLETION_PATHS):
            err = _front[0].refuse_early(scope)
            if err is not None:
                await _error(err)(scope, receive, send)  # the endpoint's own error response, itself an ASGI app
                return
        await self.app(scope, receive, send)


api.add_middleware(FrontDoor)


@serve.ingress(api)
class Ingress:
    """Ray Serve ingress deployment; ``engine`` is a handle to the Engine deployment (vLLM or HF)."""

    def __init__(self, engine, config: dict):
        from app.config.serve import ServeConfig
        from app.models.loader import load_tokenizer, resolve_model
        from app.serve.admission import TenantGate
        from app.serve.auth import KeyRing
        from app.serve.metrics import IngressMetrics
        from app.serve.resolver import build_resolver

        self.cfg = ServeConfig.model_validate(config)
        self.engine = engine
        if self.cfg.uses_llmserver:  # ray.serve.llm's LLMServer
            from app.serve.llmserver_client import LLMServerClient, lora_store

            self.engine = LLMServerClient(engine, lora_store(self.cfg), served_name_for(self.cfg.model.source, self.cfg.served_name))
        self.keys = KeyRing.from_specs(self.cfg.tenants)
        self.resolver = build_resolver(self.cfg)
        resolved = resolve_model(self.cfg.model)
        self.tokenizer = load_tokenizer(resolved)
        self.base_sha = resolved.base_sha
        self.served_name = served_name_for(self.cfg.model.source, self.cfg.served_name)
        self.metrics = IngressMetrics()
        self.gate = TenantGate({t.name: t.max_concurrent_requests for t in self.cfg.tenants},
                               {t.name: (t.max_requests_per_s, t.burst) for t in self.cfg.tenants})
        self.checked_versions: set[str] = set()  # adapter versions whose lineage matched this base
        _front[:] = [self]

    def refuse_early(self, scope) -> ServeError | None:
        """401 / 429 for a completion request from its headers alone (FrontDoor); None: let the endpoint handle it."""
        authorization = next((v for k, v in scope.get("headers", ()) if k == b"authorization"), None)
        try:
            tenant = self.keys.authenticate(authorization.decode("latin-1") if authorization is not None else None)
        except ServeError as err:
            self.metrics.record("-", "-", err.status)
            return err
        err = self.gate.over_cap(tenant)
        if err is not None:
            self.metrics.record("-", tenant, err.status)
        return err

    # ---- request plumbing ------------------------------------------------------------------------------------------
    async def _read_json(self, request: Request) -> dict:
        limit = self.cfg.limits.max_body_bytes
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise PayloadTooLarge(f"request body is {declared} bytes; the limit is {limit}")
        body = bytearray()
        async for part in request.stream():
            body.extend(part)
            if len(body) > limit:
                raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes")
        return parse_json_body(bytes(body))

    async def _route(self, tenant: str, model: str) -> AdapterTarget | None:
        """None for the base; else the tenant's adapter, resolved now (promotions apply at once) and lineage-checked."""
        from app.serve.adapter_store import check_base, read_lineage

        ref = parse_model(model, self.served_name)
        if ref.adapter is None:
            return None
        found = await asyncio.to_thread(self.resolver.resolve, tenant, ref.adapter)
        if found is None:
            raise NotFound(f"model '{model}' does not exist or you do not have access to it", param="model")
        if found.version not in self.checked_versions:
            check_base(await asyncio.to_thread(read_lineage, found.uri, ref.adapter), self.base_sha, ref.adapter)
            self.checked_versions.add(found.version)
        # registry versions ('v<N>-<hash>') label metrics per version: canary and production counted apart
        registry_version = found.version.split("-")[0] if found.version.startswith("v") else ""
        label = f"{tenant}/{found.name}" + (f"@{registry_version}" if registry_version else "")
        shown = f"{tenant}/{found.name}@{registry_version or found.version[:12]}"
        return AdapterTarget(key=found.key, label=label, uri=found.uri, version=shown)

    def _prompt_ids(self, req: ChatCompletionRequest | CompletionRequest) -> list[int]:
        field = "messages" if isinstance(req, ChatCompletionRequest) else "prompt"
        if isinstance(req, ChatCompletionRequest):
            messages = [m.model_dump() for m in req.messages]
            try:
                rendered = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True)
            except Exception as exc:  # noqa: BLE001 - e.g. a role order the chat template refuses: the caller's input
                raise BadRequest(f"messages cannot be rendered by the chat template: {exc}", param=field) from None
            ids = list(rendered["input_ids"])
        else:
            ids = list(self.tokenizer(req.prompt_text(), add_special_tokens=False)["input_ids"])
        if not ids:
            raise BadRequest(f"{field} is empty after tokenization", param=field)
        return ids

    def _max_tokens(self, req, n_prompt: int) -> int:
        limits = self.cfg.limits
        asked = getattr(req, "max_completion_tokens", None) or req.max_tokens
        if asked is not None and asked > limits.max_tokens:
            raise BadRequest(f"max_tokens={asked} is over this endpoint's limit of {limits.max_tokens}", param="max_tokens")
        max_tokens = asked or min(limits.default_max_tokens, limits.max_tokens)
        if n_prompt + max_tokens > limits.max_model_len:
            if asked is None and n_prompt < limits.max_model_len:
                return limits.max_model_len - n_prompt
            raise BadRequest(
                f"prompt is {n_prompt} tokens; with max_tokens={max_tokens} that exceeds the context of "
                f"{limits.max_model_len} tokens", param="messages" if hasattr(req, "messages") else "prompt",
            )
        return max_tokens

    # ---- endpoints -------------------------------------------------------------------------------------------------
    @api.get("/health")
    async def health(self) -> dict:
        return {"status": "ok"}

    @api.get("/v1/models")
    async def models(self, request: Request):
        try:
            tenant = self.keys.authenticate(request.headers.get("authorization"))
        except ServeError as err:
            return _error(err)
        names = await asyncio.to_thread(self.resolver.list_names, tenant)
        now = int(time.time())
        data = [{"id": self.served_name, "object": "model", "created": now, "owned_by": "shared", "root": self.served_name}]
        data += [{"id": n, "object": "model", "created": now, "owned_by": tenant, "root": self.served_name, "parent": self.served_name} for n in names]
        return {"object": "list", "data": data}

    @api.post("/v1/chat/completions")
    async def chat_completions(self, request: Request):
        return await self._complete(request, ChatCompletionRequest)

    @api.post("/v1/completions")
    async def completions(self, request: Request):
        return await self._complete(request, CompletionRequest)

    def _deadline(self) -> float | None:
        timeout = self.cfg.limits.request_timeout_s
        return None if timeout is None else time.monotonic() + timeout

    async def _complete(self, request: Request, schema):
        t0 = time.perf_counter()
        deadline = self._deadline()
        tenant, label, ticket, response = "-", "-", None, None
        try:
            tenant = self.keys.authenticate(request.headers.get("authorization"))
            ticket = self.gate.admit(tenant)
            body = await self._read_json(request)
            try:
                req = schema.model_validate(body)
            except ValidationError as exc:
                raise validation_error(exc) from None
            target = await self._route(tenant, req.model)
            label = target.label if target else "base"
            ids = self._prompt_ids(req)
            engine_req = EngineRequest(
                prompt_token_ids=ids, max_tokens=self._max_tokens(req, len(ids)), temperature=req.temperature,
                top_p=req.top_p, seed=req.seed, stop=req.stop, adapter=target, tenant=tenant,
            ).model_dump()
            handle = self.engine.options(multiplexed_model_id=target.key) if target else self.engine
            chat = schema is ChatCompletionRequest
            if req.stream:
                response = handle.options(stream=True).stream.remote(engine_req)
                first = await next_chunk(response, deadline)  # errors before the first token still get a status code
                stream = self._sse(response, first, req, chat, len(ids), tenant, label, t0, deadline, ticket)
                weakref.finalize(stream, ticket.release)  # a stream that never starts (client gone) releases too
                ticket = None  # the stream releases it when it ends
                return StreamingResponse(stream, media_type="text/event-stream",
                                         headers={"x-rayalign-adapter-version": target.version if target else "base"})
            response = handle.generate.remote(engine_req)
            out = await (response if deadline is None else asyncio.wait_for(response, max(0.0, deadline - time.monotonic())))
        except asyncio.TimeoutError:
            cancel(response)
            err = RequestTimeout("request ran past this endpoint's request_timeout_s and was cancelled")
            self.metrics.record(label, tenant, err.status)
            return _error(err)
        except asyncio.CancelledError:  # the client disconnected: its generation stops too
            cancel(response)
            self.metrics.record(label, tenant, 499)
            raise
        except ServeError as err:
            if response is not None:
                cancel(response)
            self.metrics.record(label, tenant, err.status)
            return _error(err)
        except Exception as exc:  # noqa: BLE001 - anything past validation is the engine's fault
            err = as_serve_error(exc)
            self.metrics.record(label, tenant, err.status)
            return _error(err)
        finally:
            if ticket is not None:
                ticket.release()
        latency = time.perf_counter() - t0
        self.metrics.record(label, tenant, 200, prompt_tokens=len(ids), completion_tokens=out["completion_tokens"],
                            ttft_s=latency, latency_s=latency)
        build = chat_response if chat else completion_response
        body = build(new_id("chatcmpl" if chat else "cmpl"), req.model, out["text"], out["finish_reason"], len(ids), out["completion_tokens"])
        shown = target.version if target else f"base@{self.base_sha[:12]}"
        body["system_fingerprint"] = shown  # which adapter version answered (registry: <tenant>/<name>@v<N>)
        return JSONResponse(body, headers={"x-rayalign-adapter-version": shown})

    async def _sse(self, stream, first: dict, req, chat: bool, n_prompt: int, tenant: str, label: str, t0: float,
                   deadline: float | None, ticket):
        ttft = time.perf_counter() - t0
        outcome = StreamOutcome()
        try:
            async for line in relay_sse(
                stream, first, rid=new_id("chatcmpl" if chat else "cmpl"), model=req.model, chat=chat, n_prompt=n_prompt,
                include_usage=bool(req.stream_options and req.stream_options.include_usage), deadline=deadline,
                outcome=outcome, to_error=as_serve_error,
            ):
                yield line
        finally:
            ticket.release()
            latency = time.perf_counter() - t0
            self.metrics.record(label, tenant, outcome.status, prompt_tokens=n_prompt,
                                completion_tokens=outcome.completion_tokens, ttft_s=ttft, latency_s=latency)

    async def engine_stats(self) -> dict:
        """The engine replica's resident adapters (handle call, used by tests)."""
        return await self.engine.stats.remote()

    async def replica_stats(self) -> dict:
        """This ingress replica: pid, resident memory, in-flight requests per tenant (handle call, benchmarks)."""
        from app.serve.metrics import replica_memory

        return {**replica_memory(), "inflight": dict(self.gate.inflight)}
