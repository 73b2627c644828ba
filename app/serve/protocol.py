"""OpenAI request/response bodies (the subset this API implements) as pydantic models, plus SSE framing."""

from __future__ import annotations

import json
import time
import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

SEED_MAX = 2**63 - 1  # int64, what OpenAI documents; torch.manual_seed overflows above 2**64 - 1
TEMPERATURE_FLOOR = 1e-3  # below it sampling is greedy in all but float noise (vLLM clamps < 0.01 up instead)
MAX_STOP, MAX_STOP_CHARS = 4, 64  # OpenAI's limit on stop sequences; bounds the per-token stop scan


class _Lenient(BaseModel):
    # Unknown OpenAI parameters (logit_bias, user, ...) are accepted and ignored, as OpenAI-compatible servers do.
    model_config = ConfigDict(extra="ignore")


class ChatMessage(_Lenient):
    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str = Field(max_length=200_000)


class StreamOptions(_Lenient):
    include_usage: bool = False


class _Sampling(_Lenient):
    model: str = Field(min_length=1, max_length=200)
    max_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    n: int = Field(1, ge=1, le=1)
    seed: int | None = Field(None, ge=0, le=SEED_MAX)
    stop: str | list[str] | None = Field(None, validate_default=True)  # always a list after validation
    stream: bool = False
    stream_options: StreamOptions | None = None

    @field_validator("temperature")
    @classmethod
    def _floor_to_greedy(cls, value: float) -> float:
        return 0.0 if value < TEMPERATURE_FLOOR else value

    @field_validator("stop")
    @classmethod
    def _bounded_stop(cls, value: str | list[str] | None) -> list[str]:
        stops = [value] if isinstance(value, str) else list(value or [])
        if len(stops) > MAX_STOP:
            raise ValueError(f"at most {MAX_STOP} stop sequences, got {len(stops)}")
        if any(not 0 < len(s) <= MAX_STOP_CHARS for s in stops):
            raise ValueError(f"each stop sequence must be 1..{MAX_STOP_CHARS} characters")
        return stops


class ChatCompletionRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1, max_length=256)
    max_completion_tokens: int | None = Field(None, ge=1)

    @field_validator("messages")
    @classmethod
    def _some_content(cls, value: list[ChatMessage]) -> list[ChatMessage]:
        if not any(m.content.strip() for m in value):
            raise ValueError("every message is empty")
        return value


class CompletionRequest(_Sampling):
    prompt: str | list[str] = Field(min_length=1)

    @field_validator("prompt")
    @classmethod
    def _non_empty(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, list) and not all(value):
            raise ValueError("prompt strings must be non-empty")
        return value

    def prompt_text(self) -> str:
        if isinstance(self.prompt, list):
            if len(self.prompt) != 1:
                from app.serve.errors import BadRequest

                raise BadRequest("this server takes exactly one prompt per request", param="prompt")
            return self.prompt[0]
        return self.prompt


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens}


def chat_response(rid: str, model: str, text: str, finish: str, prompt_tokens: int, completion_tokens: int) -> dict:
    return {
        "id": rid,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}],
        "usage": usage(prompt_tokens, completion_tokens),
    }


def completion_response(rid: str, model: str, text: str, finish: str, prompt_tokens: int, completion_tokens: int) -> dict:
    return {
        "id": rid,
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "text": text, "finish_reason": finish, "logprobs": None}],
        "usage": usage(prompt_tokens, completion_tokens),
    }


def chat_chunk(rid: str, model: str, delta: dict, finish: str | None, usage_block: dict | None = None) -> dict:
    choices = [] if usage_block is not None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    return {"id": rid, "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
            "choices": choices, "usage": usage_block}


def completion_chunk(rid: str, model: str, text: str, finish: str | None, usage_block: dict | None = None) -> dict:
    choices = [] if usage_block is not None else [{"index": 0, "text": text, "finish_reason": finish, "logprobs": None}]
    return {"id": rid, "object": "text_completion", "created": int(time.time()), "model": model,
            "choices": choices, "usage": usage_block}


def sse(data: dict | str) -> str:
    """One server-sent event line pair (``data: …\\n\\n``)."""
    return f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n"


class AdapterTarget(BaseModel):
    """The adapter an engine request runs with (resolved and checked by the ingress)."""

    model_config = ConfigDict(extra="forbid")
    key: str  # replica identity of this adapter version (multiplexed model id / LoRA name)
    label: str  # '<tenant>/<name>' for metrics and logs ('<tenant>/<name>@v<N>' for registry versions)
    uri: str  # local folder or s3:// URI
    version: str = ""  # the resolved version, shown as system_fingerprint / x-rayalign-adapter-version


class EngineRequest(BaseModel):
    """What the ingress sends an engine replica: token ids and sampling settings, already bounded."""

    model_config = ConfigDict(extra="forbid")
    prompt_token_ids: list[int]
    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: list[str] = []
    adapter: AdapterTarget | None = None
    tenant: str | None = None  # who asked: the HF engine takes queued requests round-robin per tenant


def truncate_at_stop(text: str, stops: list[str]) -> tuple[str, bool]:
    """Cut ``text`` before the first stop string; returns (text, whether a stop string was found)."""
    cut = min((i for i in (text.find(s) for s in stops if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


def parse_json_body(body: bytes) -> dict:
    """The request body as a JSON object, or BadRequest (400): invalid JSON, too deeply nested, or not an object."""
    from app.serve.errors import BadRequest

    try:
        data = json.loads(body)
    except RecursionError:  # json's C parser recurses once per '[' / '{': a 64 KiB body can nest past the limit
        raise BadRequest("request body is nested too deeply") from None
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise BadRequest("request body must be a JSON object")
    return data
