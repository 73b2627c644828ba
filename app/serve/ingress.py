"""The OpenAI-compatible HTTP front door: auth → bounded body → model routing → tokenize → engine → OpenAI JSON/SSE.

Everything a user can get wrong is caught here and answered in the OpenAI error shape (401/404/409/400/413/422);
only a failing engine answers 503. The engine sees token ids and a resolved, lineage-checked adapter location.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import ValidationError
from ray import serve

from app.serve.errors import BadRequest, EngineUnavailable, NotFound, PayloadTooLarge, ServeError, Unprocessable
from app.serve.names import parse_model, served_name_for
from app.serve.protocol import (
    AdapterTarget,
    ChatCompletionRequest,
    CompletionRequest,
    EngineRequest,
    chat_chunk,
    chat_response,
    completion_chunk,
    completion_response,
    new_id,
    sse,
    usage,
)

log = logging.getLogger(__name__)
api = FastAPI(title="rayalign OpenAI-compatible API", docs_url=None, redoc_url=None)


def as_serve_error(exc: BaseException) -> ServeError:
    """A ServeError raised here or inside an engine replica (Ray wraps it), else 503: the engine failed."""
    for candidate in (exc, getattr(exc, "cause", None)):
        if isinstance(candidate, ServeError):
            return candidate
    log.warning("engine call failed: %s", exc, exc_info=exc)
    return EngineUnavailable(f"engine unavailable: {type(exc).__name__}")


def _error(err: ServeError) -> JSONResponse:
    return JSONResponse(err.body(), status_code=err.status)


@serve.ingress(api)
class Ingress:
    """Ray Serve ingress deployment; ``engine`` is a handle to the Engine deployment (vLLM or HF)."""

    def __init__(self, engine, config: dict):
        from app.config.serve import ServeConfig
        from app.models.loader import load_tokenizer, resolve_model
        from app.serve.auth import KeyRing
        from app.serve.metrics import IngressMetrics
        from app.serve.resolver import build_resolver

        self.cfg = ServeConfig.model_validate(config)
        self.engine = engine
        self.keys = KeyRing.from_specs(self.cfg.tenants)
        self.resolver = build_resolver(self.cfg)
        resolved = resolve_model(self.cfg.model)
        self.tokenizer = load_tokenizer(resolved)
        self.base_sha = resolved.base_sha
        self.served_name = served_name_for(self.cfg.model.source, self.cfg.served_name)
        self.metrics = IngressMetrics()
        self.checked_versions: set[str] = set()  # adapter versions whose lineage matched this base

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
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise BadRequest("request body is not valid JSON") from None
        if not isinstance(data, dict):
            raise BadRequest("request body must be a JSON object")
        return data

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
            check_base(await asyncio.to_thread(read_lineage, found.uri), self.base_sha, ref.adapter)
            self.checked_versions.add(found.version)
        return AdapterTarget(key=found.key, label=f"{tenant}/{ref.adapter}", uri=found.uri)

    def _prompt_ids(self, req: ChatCompletionRequest | CompletionRequest) -> list[int]:
        if isinstance(req, ChatCompletionRequest):
            messages = [m.model_dump() for m in req.messages]
            return list(self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"])
        return list(self.tokenizer(req.prompt_text(), add_special_tokens=False)["input_ids"])

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

    async def _complete(self, request: Request, schema):
        t0 = time.perf_counter()
        tenant, label = "-", "-"
        try:
            tenant = self.keys.authenticate(request.headers.get("authorization"))
            body = await self._read_json(request)
            try:
                req = schema.model_validate(body)
            except ValidationError as exc:
                first = exc.errors()[0]
                raise Unprocessable(f"{'.'.join(map(str, first['loc']))}: {first['msg']}", param=str(first["loc"][0])) from None
            target = await self._route(tenant, req.model)
            label = target.label if target else "base"
            ids = self._prompt_ids(req)
            engine_req = EngineRequest(
                prompt_token_ids=ids, max_tokens=self._max_tokens(req, len(ids)), temperature=req.temperature,
                top_p=req.top_p, seed=req.seed, stop=[req.stop] if isinstance(req.stop, str) else (req.stop or []),
                adapter=target,
            ).model_dump()
            handle = self.engine.options(multiplexed_model_id=target.key) if target else self.engine
            chat = schema is ChatCompletionRequest
            if req.stream:
                stream = handle.options(stream=True).stream.remote(engine_req)
                first = await stream.__anext__()  # errors before the first token still get a proper status code
                return StreamingResponse(
                    self._sse(stream, first, req, chat, len(ids), tenant, label, t0), media_type="text/event-stream"
                )
            out = await handle.generate.remote(engine_req)
        except ServeError as err:
            self.metrics.record(label, tenant, err.status)
            return _error(err)
        except Exception as exc:  # noqa: BLE001 - anything past validation is the engine's fault
            err = as_serve_error(exc)
            self.metrics.record(label, tenant, err.status)
            return _error(err)
        latency = time.perf_counter() - t0
        self.metrics.record(label, tenant, 200, prompt_tokens=len(ids), completion_tokens=out["completion_tokens"],
                            ttft_s=latency, latency_s=latency)
        build = chat_response if chat else completion_response
        return build(new_id("chatcmpl" if chat else "cmpl"), req.model, out["text"], out["finish_reason"], len(ids), out["completion_tokens"])

    async def _sse(self, stream, first: dict, req, chat: bool, n_prompt: int, tenant: str, label: str, t0: float):
        rid = new_id("chatcmpl" if chat else "cmpl")
        ttft = time.perf_counter() - t0
        n, status = 0, 200
        if chat:
            yield sse(chat_chunk(rid, req.model, {"role": "assistant", "content": ""}, None))
        try:
            chunk = first
            while True:
                n = chunk["completion_tokens"]
                if chunk["text"] or chunk["finish_reason"]:
                    if chat:
                        delta = {"content": chunk["text"]} if chunk["text"] else {}
                        yield sse(chat_chunk(rid, req.model, delta, chunk["finish_reason"]))
                    else:
                        yield sse(completion_chunk(rid, req.model, chunk["text"], chunk["finish_reason"]))
                try:
                    chunk = await stream.__anext__()
                except StopAsyncIteration:
                    break
            if req.stream_options and req.stream_options.include_usage:
                build = chat_chunk if chat else completion_chunk
                yield sse(build(rid, req.model, {} if chat else "", None, usage(n_prompt, n)))
        except Exception as exc:  # noqa: BLE001 - headers are gone: report the failure in-band, as OpenAI does
            err = as_serve_error(exc)
            status = err.status
            yield sse(err.body())
        yield sse("[DONE]")
        latency = time.perf_counter() - t0
        self.metrics.record(label, tenant, status, prompt_tokens=n_prompt, completion_tokens=n, ttft_s=ttft, latency_s=latency)

    async def engine_stats(self) -> dict:
        """The engine replica's resident adapters (handle call, used by tests)."""
        return await self.engine.stats.remote()
