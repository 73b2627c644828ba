"""The ingress's side of ``vllm.backend: ray_serve_llm``: validated engine requests → ray.serve.llm ``LLMServer`` calls.

``LLMServerClient`` wraps the Engine deployment's handle with the call surface the ingress uses for its own engines
(``options(...)``, ``stream.remote(request)``, ``generate.remote(request)``, ``stats.remote()``), so everything in front
of it — keys, tenants, caps and rates, name and body validation, the lineage check, OpenAI error shapes, the SSE relay
with its error event and ``[DONE]``, timeouts and cancel-on-disconnect — is the same code for both vLLM backends.

Each request becomes an ``LLMServer.completions`` call with ``stream=True`` (a non-streaming request is collected here):
the prompt as the token ids the ingress rendered and bounded, the sampling values it validated, and as ``model`` and
multiplexed model id ``<served base>:<adapter URI relative to the store>`` (an adapter outside the store is a 404 naming
the adapter). LLMServer's SSE lines (``data: {...}``, batched every 50 ms) are parsed back into the engine chunks the
relay expects (``{"text", "completion_tokens", "finish_reason"}``, token counts from vLLM's continuous usage stats);
an error it returns (vLLM's ``ErrorResponse``, an ``HTTPException`` from its LoRA loader) becomes the ServeError with
that status (4xx), anything else stays an engine failure (503). Closing a stream cancels the LLMServer call.
"""

from __future__ import annotations

import asyncio
import json

from app.serve.errors import BadRequest, EngineUnavailable, NotFound, PayloadTooLarge, ServeError, TooManyRequests, Unprocessable
from app.serve.protocol import AdapterTarget, EngineRequest

_BY_STATUS = {400: BadRequest, 404: NotFound, 413: PayloadTooLarge, 422: Unprocessable, 429: TooManyRequests}


def lora_store(cfg) -> str:
    """The object-store prefix every adapter of a ``ray_serve_llm`` deployment lives under (validated by ServeConfig)."""
    return (cfg.vllm.lora_store or cfg.adapters.root).rstrip("/")


def model_id(adapter: AdapterTarget | None, store: str, served_name: str) -> str:
    """LLMServer's model id: the base's, or ``<base>:<adapter URI relative to the store>`` (its multiplexed LoRA id,
    from which it derives the download path ``<store>/<relative path>``); an adapter elsewhere is a 404."""
    if adapter is None:
        return served_name
    uri, store = adapter.uri.rstrip("/"), store.rstrip("/")
    if not uri.startswith(store + "/"):
        raise NotFound(f"adapter '{adapter.label}' is not in this endpoint's adapter store", param="model")
    return f"{served_name}:{uri[len(store) + 1:]}"


def error_from(status: int | None, message: str, param: str | None = None) -> ServeError:
    """The ServeError for an error LLMServer answered: its 4xx class, else a 503 (the request itself was valid)."""
    cls = _BY_STATUS.get(status or 0)
    if cls is None:
        return EngineUnavailable(f"ray.serve.llm engine failed: {message[:200]}")
    return cls(message, param=param)


def _raised(exc: BaseException) -> ServeError | None:
    """A 4xx ServeError for an exception LLMServer raised (Ray wraps it; ``cause`` is the original), else None."""
    for candidate in (exc, getattr(exc, "cause", None)):
        status = getattr(candidate, "status_code", None)  # fastapi's HTTPException (LoRA not found in the store)
        if isinstance(status, int) and 400 <= status < 500:
            return error_from(status, str(getattr(candidate, "detail", candidate)), "model")
        if isinstance(candidate, ValueError) and "lora" in str(candidate).lower():  # its resolve_lora refused the files
            return NotFound(f"adapter could not be loaded: {candidate}", param="model")
    return None


def parse_events(item) -> list[dict]:
    """The JSON events in one item of an LLMServer stream: a list of ``data: ...`` strings (or one), or an
    ``ErrorResponse`` object; raises the ServeError of an error event."""
    events = []
    for part in item if isinstance(item, list) else [item]:
        if not isinstance(part, str):  # ErrorResponse (or an unexpected object: the engine's fault)
            error = getattr(part, "error", None)
            if error is None:
                raise EngineUnavailable(f"ray.serve.llm engine answered {type(part).__name__}")
            raise error_from(getattr(error, "code", None), getattr(error, "message", ""), getattr(error, "param", None))
        for line in part.splitlines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[6:])
            if "error" in event:
                err = event["error"]
                raise error_from(err.get("code"), str(err.get("message", "")), err.get("param"))
            events.append(event)
    return events


class ChunkStream:
    """One LLMServer completions call as the ingress's engine stream: ``async for`` chunks; ``cancel()`` stops it."""

    def __init__(self, response):
        self._response = response  # a Serve DeploymentResponseGenerator
        self._chunks = self._iterate()

    def __aiter__(self):
        return self

    async def __anext__(self) -> dict:
        return await self._chunks.__anext__()

    def cancel(self) -> None:
        self._response.cancel()

    async def _iterate(self):
        tokens = 0
        try:
            async for item in self._response:
                text, finish = [], None
                for event in parse_events(item):
                    if event.get("usage"):
                        tokens = event["usage"].get("completion_tokens", tokens)
                    for choice in event.get("choices") or []:
                        text.append(choice.get("text") or "")
                        finish = choice.get("finish_reason") or finish
                if text and (any(text) or finish):
                    yield {"text": "".join(text), "completion_tokens": tokens, "finish_reason": finish}
        except ServeError:
            raise
        except (asyncio.CancelledError, GeneratorExit):
            self.cancel()
            raise
        except Exception as exc:  # noqa: BLE001 - a 4xx LLMServer raised keeps its status; the rest is the ingress's 503
            err = _raised(exc)
            if err is None:
                raise
            raise err from None


async def collect(stream: ChunkStream) -> dict:
    """A whole completion from a chunk stream: ``{"text", "completion_tokens", "finish_reason"}``."""
    text, n, finish = [], 0, "length"
    try:
        async for chunk in stream:
            text.append(chunk["text"])
            n, finish = chunk["completion_tokens"], chunk["finish_reason"] or finish
    except asyncio.CancelledError:  # the caller left or timed out: stop the generation
        stream.cancel()
        raise
    return {"text": "".join(text), "completion_tokens": n, "finish_reason": finish}


class _Method:
    def __init__(self, call):
        self.remote = call


class LLMServerClient:
    """The Engine handle of a ``ray_serve_llm`` deployment, spoken to as the ingress speaks to its own engines."""

    def __init__(self, handle, store: str, served_name: str):
        from ray.serve.llm.openai_api_models import CompletionRequest  # imports vLLM's protocol: once, not per request

        self._request_cls = CompletionRequest
        self.handle = handle
        self._handles: dict = {}
        self.store = store.rstrip("/")
        self.served_name = served_name
        self.stream = _Method(self._stream)
        self.generate = _Method(lambda request: asyncio.ensure_future(collect(self._stream(request))))
        self.stats = handle.stats

    def options(self, **_ignored) -> "LLMServerClient":
        """Accepts the ingress's handle options; the multiplexed id is derived from each request's adapter URI."""
        return self

    def completion_request(self, req: EngineRequest, model: str):
        return self._request_cls(
            model=model, prompt=req.prompt_token_ids, max_tokens=req.max_tokens, temperature=req.temperature,
            top_p=req.top_p, seed=req.seed, stop=list(req.stop), stream=True,
            stream_options={"include_usage": True, "continuous_usage_stats": True},
        )

    def _configured(self, model: str, lora: bool):
        """A streaming handle per model id, made once (``options()`` builds a new handle each call); LoRA requests
        carry the multiplexed id (Serve routes them to a replica holding the adapter), base requests do not."""
        handle = self._handles.get(model)
        if handle is None:
            if len(self._handles) >= 1024:
                self._handles.clear()
            handle = self._handles[model] = (
                self.handle.options(stream=True, multiplexed_model_id=model) if lora else self.handle.options(stream=True))
        return handle

    def _stream(self, request: dict) -> ChunkStream:
        req = EngineRequest.model_validate(request)
        model = model_id(req.adapter, self.store, self.served_name)
        handle = self._configured(model, req.adapter is not None)
        return ChunkStream(handle.completions.remote(self.completion_request(req, model)))
