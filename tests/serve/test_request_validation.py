"""Everything a request can carry is bounded at the ingress (issue 20): pure checks, no Ray, no model."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import ValidationError

from app.serve.errors import BadRequest
from app.serve.names import parse_model, validate_name
from app.serve.protocol import ChatCompletionRequest, CompletionRequest

USER = [{"role": "user", "content": "hi"}]


def field_of(exc: ValidationError) -> str:
    return str(exc.errors()[0]["loc"][0])


@pytest.mark.parametrize("seed", [2**64, 2**70, -1])
def test_out_of_range_seed_is_refused_naming_seed(seed):
    with pytest.raises(ValidationError) as err:
        ChatCompletionRequest(model="m", messages=USER, seed=seed)
    assert field_of(err.value) == "seed"
    assert ChatCompletionRequest(model="m", messages=USER, seed=2**63 - 1).seed == 2**63 - 1


def test_temperature_below_the_floor_is_greedy():
    assert CompletionRequest(model="m", prompt="x", temperature=1e-300).temperature == 0.0
    assert CompletionRequest(model="m", prompt="x", temperature=0.7).temperature == 0.7


@pytest.mark.parametrize("prompt", ["", [""], ["ok", ""]])
def test_empty_prompt_is_refused(prompt):
    with pytest.raises(ValidationError) as err:
        CompletionRequest(model="m", prompt=prompt)
    assert field_of(err.value) == "prompt"


def test_chat_of_only_empty_messages_is_refused():
    with pytest.raises(ValidationError) as err:
        ChatCompletionRequest(model="m", messages=[{"role": "user", "content": "  "}])
    assert field_of(err.value) == "messages"


@pytest.mark.parametrize("stop", [["a", "b", "c", "d", "e"], ["x" * 65], [""], ""])
def test_stop_is_bounded(stop):
    with pytest.raises(ValidationError) as err:
        CompletionRequest(model="m", prompt="x", stop=stop)
    assert field_of(err.value) == "stop"


def test_valid_stop_forms_normalize_to_a_list():
    assert CompletionRequest(model="m", prompt="x", stop="\n").stop == ["\n"]
    assert CompletionRequest(model="m", prompt="x", stop=["a", "x" * 64]).stop == ["a", "x" * 64]
    assert CompletionRequest(model="m", prompt="x").stop == []


@pytest.mark.parametrize("name", ["alpha\n", "alpha\r\n", "\nalpha"])
def test_model_name_with_a_newline_is_refused(name):
    with pytest.raises(BadRequest):
        validate_name(name)
    with pytest.raises(BadRequest):
        parse_model(name, "base")


def test_deeply_nested_json_is_a_400_not_a_crash():
    from app.serve.protocol import parse_json_body

    with pytest.raises(BadRequest, match="nested too deeply"):
        parse_json_body(b"[" * 50_000 + b"]" * 50_000)
    with pytest.raises(BadRequest, match="JSON object"):
        parse_json_body(b"[1]")
    assert parse_json_body(b'{"model": "m"}') == {"model": "m"}


def test_error_bodies_carry_no_server_paths():
    from app.serve.errors import NotFound, scrub_paths

    body = NotFound("adapter at /srv/rayalign/adapters/acme/x has no config (see file:///etc/y)").body()
    assert "/srv" not in body["error"]["message"] and "/etc" not in body["error"]["message"]
    assert scrub_paths("use a-z, 0-9 (max 64, no '..'); see https://platform.openai.com/docs") == (
        "use a-z, 0-9 (max 64, no '..'); see https://platform.openai.com/docs"
    )


def test_tenant_gate_caps_one_tenant_and_not_the_others():
    from app.serve.admission import TenantGate
    from app.serve.errors import TooManyRequests

    gate = TenantGate({"a": 2, "b": None})
    held = [gate.admit("a"), gate.admit("a")]
    with pytest.raises(TooManyRequests, match="limit is 2"):
        gate.admit("a")
    others = [gate.admit("b") for _ in range(50)]  # uncapped tenant unaffected
    held[0].release()
    held[0].release()  # idempotent
    gate.admit("a")
    assert gate.inflight == {"a": 2, "b": 50} and len(others) == 50


def test_tenant_rate_limit_bounds_requests_started_not_only_in_flight():
    """A tenant of short requests never exceeds its concurrency cap yet can start many per second: the token bucket
    refuses the request past its rate (429, code tenant_rate_limit, Retry-After = whole seconds until a token), a
    refused request takes no token, the bucket refills at the rate, and other tenants are untouched."""
    from app.serve.admission import TenantGate
    from app.serve.errors import TooManyRequests

    now = [100.0]
    gate = TenantGate({"a": 4, "b": None}, {"a": (2.0, None), "b": (None, None)}, clock=lambda: now[0])
    for _ in range(2):  # burst defaults to ceil(rate) = 2; each request ends at once, so the cap is never reached
        gate.admit("a").release()
    with pytest.raises(TooManyRequests, match=r"rate limit of 2 requests/s") as refused:
        gate.admit("a")
    assert refused.value.code == "tenant_rate_limit" and refused.value.retry_after_s == 1
    assert all(gate.over_cap("a") is not None for _ in range(20))  # asking takes nothing
    assert [gate.admit("b") for _ in range(50)] and gate.over_cap("b") is None  # no rate for b
    now[0] += 0.5  # one token back at 2/s
    gate.admit("a").release()
    assert gate.over_cap("a") is not None
    now[0] += 60  # refills to the burst, not beyond
    gate.admit("a").release(), gate.admit("a").release()
    assert gate.over_cap("a") is not None

    slow = TenantGate({}, {"s": (0.25, 1)}, clock=lambda: now[0], jitter=lambda: 0.25)
    slow.admit("s")
    assert slow.over_cap("s").retry_after_s == 4 and slow.over_cap("s").retry_after_ms == 4250
    assert gate.inflight["a"] == 0


def test_tenant_refusals_spread_their_retries():
    """Clients refused together are told to come back at different moments (retry-after-ms: the wait, at least 0.5 s,
    plus 0-1 s of jitter), not all in the same second as an integer Retry-After would have them."""
    from app.serve.admission import TenantGate

    gate = TenantGate({"a": 1}, {"r": (4.0, 1)}, clock=lambda: 0.0)
    gate.admit("a"), gate.admit("r")
    capped = [gate.over_cap("a") for _ in range(200)]
    rated = [gate.over_cap("r") for _ in range(200)]
    for refusals in (capped, rated):
        ms = [e.retry_after_ms for e in refusals]
        assert {e.retry_after_s for e in refusals} == {1}
        assert 500 <= min(ms) < 600 and 1400 < max(ms) <= 1500 and len(set(ms)) > 100


def test_full_engine_queue_is_429_with_retry_after():
    from ray.serve.exceptions import BackPressureError

    from app.serve.ingress import _error, as_serve_error

    err = as_serve_error(BackPressureError(num_queued_requests=9, max_queued_requests=8, retry_after_s=3))
    response = _error(err)
    assert response.status_code == 429 and response.headers["Retry-After"] == "3"


class _Stream:
    """An engine response generator: ``chunks`` then ``fail`` (if given); records cancel()."""

    def __init__(self, chunks, fail=None, delay=0.0):
        self.chunks, self.fail, self.delay, self.cancelled = list(chunks), fail, delay, False

    def __aiter__(self):
        return self

    async def __anext__(self):
        await asyncio.sleep(self.delay)
        if self.chunks:
            return self.chunks.pop(0)
        if self.fail:
            raise self.fail
        raise StopAsyncIteration

    def cancel(self):
        self.cancelled = True


def _relay(stream, deadline=None):
    from app.serve.ingress import as_serve_error
    from app.serve.relay import StreamOutcome, relay_sse

    first = {"text": "a", "completion_tokens": 1, "finish_reason": None}
    outcome = StreamOutcome()
    gen = relay_sse(stream, first, rid="r", model="m", chat=True, n_prompt=3, include_usage=False, deadline=deadline,
                    outcome=outcome, to_error=as_serve_error)
    return gen, outcome


def _events(messages: list[str]) -> list[str]:
    """The SSE events in the relay's messages (one message may carry several events)."""
    return [e + "\n\n" for e in "".join(messages).split("\n\n") if e]


def test_relay_sends_events_that_are_ready_together_as_one_message():
    import json

    middle = [{"text": t, "completion_tokens": i + 2, "finish_reason": None} for i, t in enumerate("bcd")]
    stream = _Stream(middle + [{"text": "e", "completion_tokens": 5, "finish_reason": "length"}])
    from app.serve.ingress import as_serve_error
    from app.serve.relay import StreamOutcome, relay_sse

    gen = relay_sse(stream, {"text": "a", "completion_tokens": 1, "finish_reason": None}, rid="r", model="m", chat=True,
                    n_prompt=3, include_usage=True, deadline=None, outcome=StreamOutcome(), to_error=as_serve_error)

    async def drain():
        return [m async for m in gen]

    messages = asyncio.run(drain())
    events = _events(messages)
    # role + "a" | "b" | "c" | "d" | "e" with finish_reason + usage + [DONE]: 5 messages for 8 events
    assert len(messages) == 5 and len(events) == 8, messages
    assert messages[0] == events[0] + events[1] and messages[-1] == "".join(events[-3:])
    data = [json.loads(e[6:]) for e in events[:-1]]
    assert [d["choices"][0]["delta"].get("content") for d in data[:-1]] == ["", "a", "b", "c", "d", "e"]
    assert data[-2]["choices"][0]["finish_reason"] == "length" and data[-1]["usage"]["completion_tokens"] == 5
    assert events[-1] == "data: [DONE]\n\n"


def test_stream_failing_midway_ends_with_error_event_then_done():
    from app.serve.errors import EngineUnavailable

    stream = _Stream([{"text": "b", "completion_tokens": 2, "finish_reason": None}], fail=EngineUnavailable("engine died"))
    gen, outcome = _relay(stream)

    async def drain():
        return [line async for line in gen]

    lines = _events(asyncio.run(drain()))
    assert lines[-1] == "data: [DONE]\n\n" and '"engine_unavailable"' in lines[-2]
    assert outcome.status == 503 and stream.cancelled


def test_stream_past_request_timeout_is_cancelled_and_terminated():
    import time

    stream = _Stream([{"text": "b", "completion_tokens": 2, "finish_reason": None}] * 100, delay=0.05)
    gen, outcome = _relay(stream, deadline=time.monotonic() + 0.3)

    async def drain():
        return [line async for line in gen]

    lines = _events(asyncio.run(drain()))
    assert lines[-1] == "data: [DONE]\n\n" and '"timeout"' in lines[-2]
    assert outcome.status == 504 and stream.cancelled and len(lines) < 20


def test_client_leaving_cancels_the_engine_call():
    stream = _Stream([{"text": "b", "completion_tokens": 2, "finish_reason": None}] * 100)
    gen, outcome = _relay(stream)

    async def leave_early():
        await gen.__anext__()
        await gen.__anext__()
        await gen.aclose()

    asyncio.run(leave_early())
    assert stream.cancelled and outcome.status == 499


def test_front_door_refuses_over_cap_and_unknown_keys_from_headers_alone():
    """A tenant at its cap gets 429 (and an unknown key 401) from the ASGI middleware in front of FastAPI: no routing,
    no body read (an invalid 1 MB body still gets the 429, not a 400/413), the same OpenAI error the endpoint gives."""
    import types

    import httpx

    from app.serve import ingress
    from app.serve.admission import TenantGate
    from app.serve.auth import KeyRing, hash_key

    recorded = []
    door = types.SimpleNamespace(keys=KeyRing({hash_key("sk-a"): "a"}), gate=TenantGate({"a": 1}),
                                 metrics=types.SimpleNamespace(record=lambda *a: recorded.append(a)))
    door.refuse_early = types.MethodType(ingress.Ingress.refuse_early, door)
    door.gate.admit("a")  # a is at its cap of 1

    async def post(key):
        transport = httpx.ASGITransport(app=ingress.api)
        async with httpx.AsyncClient(transport=transport, base_url="http://x") as client:
            return await client.post("/v1/chat/completions", content=b"{" * 1_000_000, headers={"Authorization": f"Bearer {key}"})

    saved = list(ingress._front)
    ingress._front[:] = [door]
    try:
        over, unknown = asyncio.run(post("sk-a")), asyncio.run(post("sk-b"))
    finally:
        ingress._front[:] = saved
    assert over.status_code == 429 and over.headers["Retry-After"] == "1"
    assert over.json()["error"]["code"] == "tenant_concurrency_limit" and "limit is 1" in over.json()["error"]["message"]
    assert unknown.status_code == 401 and unknown.json()["error"]["message"] == "invalid API key"
    assert recorded == [("-", "a", 429), ("-", "-", 401)] and door.gate.inflight == {"a": 1}


def test_front_door_refuses_a_tenant_over_its_rate_from_headers_alone():
    """The rate limit is decided in the same place: 429 with the bucket's Retry-After before the body is read."""
    import types

    import httpx

    from app.serve import ingress
    from app.serve.admission import TenantGate
    from app.serve.auth import KeyRing, hash_key

    door = types.SimpleNamespace(keys=KeyRing({hash_key("sk-a"): "a"}), gate=TenantGate({}, {"a": (0.5, 1)}),
                                 metrics=types.SimpleNamespace(record=lambda *a: None))
    door.refuse_early = types.MethodType(ingress.Ingress.refuse_early, door)
    door.gate.admit("a").release()  # its one token is spent

    async def post():
        transport = httpx.ASGITransport(app=ingress.api)
        async with httpx.AsyncClient(transport=transport, base_url="http://x") as client:
            return await client.post("/v1/chat/completions", content=b"{" * 1_000_000, headers={"Authorization": "Bearer sk-a"})

    saved = list(ingress._front)
    ingress._front[:] = [door]
    try:
        over = asyncio.run(post())
    finally:
        ingress._front[:] = saved
    assert over.status_code == 429 and over.headers["Retry-After"] == "2"
    assert 2000 <= int(over.headers["retry-after-ms"]) <= 3000
    assert over.json()["error"]["code"] == "tenant_rate_limit" and over.json()["error"]["type"] == "rate_limit_error"
