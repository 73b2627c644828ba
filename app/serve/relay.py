"""Engine chunks → OpenAI server-sent events. Every stream ends: chunks, then (on failure) one error event, then [DONE].

A client that goes away (the generator is closed or cancelled) cancels the engine call, so its generation stops
instead of running on to ``max_tokens``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from app.serve.errors import RequestTimeout, ServeError
from app.serve.protocol import chat_chunk, completion_chunk, sse, usage


@dataclass
class StreamOutcome:
    """What a finished stream did (filled in as it runs): HTTP-equivalent status and completion tokens sent."""

    status: int = 200
    completion_tokens: int = 0


async def next_chunk(stream, deadline: float | None) -> dict:
    """The engine stream's next chunk; RequestTimeout past ``deadline`` (``time.monotonic()`` clock)."""
    if deadline is None:
        return await stream.__anext__()
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise RequestTimeout("request ran past this endpoint's request_timeout_s and was cancelled")
    try:
        return await asyncio.wait_for(stream.__anext__(), remaining)
    except asyncio.TimeoutError:
        raise RequestTimeout("request ran past this endpoint's request_timeout_s and was cancelled") from None


def cancel(stream) -> None:
    """Cancel an engine call (a Serve response or response generator); a no-op for plain iterators."""
    stop = getattr(stream, "cancel", None)
    if stop is not None:
        stop()


async def relay_sse(
    stream, first: dict, *, rid: str, model: str, chat: bool, n_prompt: int, include_usage: bool,
    deadline: float | None, outcome: StreamOutcome, to_error: Callable[[BaseException], ServeError],
) -> AsyncIterator[str]:
    """SSE lines for one completion. ``first`` is the engine's first chunk (already awaited for the status code).

    Each yielded string is one message ingress -> proxy -> client, and each message costs CPU in both whatever its
    size, so events that are ready together go together: the role event with the first text, and the final chunk with
    the usage event and ``[DONE]`` (the engine's chunk carrying ``finish_reason`` is its last).
    """
    build = chat_chunk if chat else completion_chunk
    try:
        out = sse(chat_chunk(rid, model, {"role": "assistant", "content": ""}, None)) if chat else ""
        chunk = first
        while True:
            outcome.completion_tokens = chunk["completion_tokens"]
            if chunk["text"] or chunk["finish_reason"]:
                if chat:
                    delta = {"content": chunk["text"]} if chunk["text"] else {}
                    out += sse(chat_chunk(rid, model, delta, chunk["finish_reason"]))
                else:
                    out += sse(completion_chunk(rid, model, chunk["text"], chunk["finish_reason"]))
            if not chunk["finish_reason"] and out:
                yield out
                out = ""
            try:
                chunk = await next_chunk(stream, deadline)
            except StopAsyncIteration:
                break
        if include_usage:
            out += sse(build(rid, model, {} if chat else "", None, usage(n_prompt, outcome.completion_tokens)))
    except (asyncio.CancelledError, GeneratorExit):  # the client went away: stop its generation, send nothing more
        outcome.status = 499
        cancel(stream)
        raise
    except Exception as exc:  # noqa: BLE001 - headers are gone: report the failure in-band, as OpenAI does
        cancel(stream)
        err = to_error(exc)
        outcome.status = err.status
        out += sse(err.body())
    yield out + sse("[DONE]")
