"""Issue 20 over real HTTP (Ray Serve, HF engine, tiny model): one bad request never hurts another, streams always
end, every client mistake is a 4xx in OpenAI's shape naming the field, bounded queues and per-tenant caps answer 429."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest

from tests.serve.conftest import KEYS, make_adapter_root

pytestmark = pytest.mark.ray
APP = "rayalign-hf-abuse"
BASE = "tiny-llama"
GLOBEX_CAP = 2
RATED_KEY = "sk-initech-test-key"  # tenant initech: 0.2 requests/s, burst 1


@pytest.fixture(scope="module")
def app(serve_port, tiny_model_dir, tmp_path_factory):
    from ray import serve

    from app.config.loader import load_config
    from app.config.serve import ServeConfig
    from app.serve.app import build_app
    from app.serve.auth import hash_key

    root = make_adapter_root(tmp_path_factory.mktemp("adapters"), tiny_model_dir, std=0.5, r=4)
    (root / "acme" / "nolineage").mkdir()
    (root / "acme" / "nolineage" / "adapter_config.json").write_text(json.dumps({"r": 4}))
    tenants = (f"tenants=[{{name: acme, api_key_sha256: [{hash_key(KEYS['acme'])}]}}, "
               f"{{name: globex, api_key_sha256: [{hash_key(KEYS['globex'])}], max_concurrent_requests: {GLOBEX_CAP}}}, "
               f"{{name: initech, api_key_sha256: [{hash_key(RATED_KEY)}], max_requests_per_s: 0.2, burst: 1}}]")
    cfg = load_config(None, ServeConfig, [
        "model.source=tiny:llama", "engine=hf", f"adapters.root={root}", "engine_deployment.num_cpus=0.5",
        "engine_deployment.max_ongoing_requests=8", "engine_deployment.max_queued_requests=8",
        "ingress_deployment.num_cpus=0.1", "limits.max_tokens=200", "limits.max_model_len=256", tenants,
    ])
    serve.run(build_app(cfg), name=APP, route_prefix="/", blocking=False)
    yield {"url": f"http://127.0.0.1:{serve_port}", "root": root, "engine": serve.get_deployment_handle("Engine", APP),
           "ingress": serve.get_deployment_handle("Ingress", APP)}
    serve.delete(APP)


def headers(tenant="acme") -> dict:
    return {"Authorization": f"Bearer {KEYS[tenant]}"}


def body(**kw) -> dict:
    return {"model": BASE, "messages": [{"role": "user", "content": "count to ten"}], "max_tokens": 8, "temperature": 0, **kw}


async def post_all(url: str, bodies: list[dict], tenant="acme", timeout=60) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=timeout) as c:
        return await asyncio.gather(*(c.post(url + "/v1/chat/completions", json=b, headers=headers(tenant)) for b in bodies))


def assert_openai_error(r: httpx.Response, status: int, param: str | None = None):
    assert r.status_code == status, (r.status_code, r.text)
    err = r.json()["error"]
    assert {"message", "type", "param", "code"} <= set(err) and err["message"]
    if param:
        assert err["param"] == param, err


def test_poisoned_request_in_a_concurrent_batch_fails_only_itself(app):
    bodies = [body(messages=[{"role": "user", "content": f"count {i}"}]) for i in range(7)]
    bodies.append(body(temperature=1.0, seed=2**70))
    out = asyncio.run(post_all(app["url"], bodies))
    assert [r.status_code for r in out[:7]] == [200] * 7, [r.text for r in out[:7]]
    assert_openai_error(out[7], 422, "seed")


def test_poisoned_request_streamed_terminates(app):
    with httpx.stream("POST", app["url"] + "/v1/chat/completions", json=body(stream=True, temperature=1.0, seed=2**70),
                      headers=headers(), timeout=20) as r:
        r.read()
    assert_openai_error(r, 422, "seed")


def test_deeply_nested_json_is_400(app):
    r = httpx.post(app["url"] + "/v1/chat/completions", content=b"[" * 3000 + b"]" * 3000, headers=headers(), timeout=20)
    assert_openai_error(r, 400)
    assert "nested" in r.json()["error"]["message"]


def test_model_name_with_a_trailing_newline_is_400(app):
    r = httpx.post(app["url"] + "/v1/chat/completions", json=body(model="alpha\n"), headers=headers(), timeout=20)
    assert_openai_error(r, 400, "model")


def test_temperature_floor_answers_greedily(app):
    greedy, tiny = asyncio.run(post_all(app["url"], [body(max_tokens=12), body(max_tokens=12, temperature=1e-300)]))
    assert greedy.status_code == tiny.status_code == 200, tiny.text
    assert tiny.json()["choices"][0]["message"]["content"] == greedy.json()["choices"][0]["message"]["content"]


def test_empty_prompt_and_unbounded_stop_are_4xx_naming_the_field(app):
    r = httpx.post(app["url"] + "/v1/completions", json={"model": BASE, "prompt": [""], "max_tokens": 4}, headers=headers(), timeout=20)
    assert_openai_error(r, 422, "prompt")
    r = httpx.post(app["url"] + "/v1/chat/completions", json=body(stop=["a", "b", "c", "d", "e"]), headers=headers(), timeout=20)
    assert_openai_error(r, 422, "stop")
    r = httpx.post(app["url"] + "/v1/chat/completions", json=body(stop=["x" * 65]), headers=headers(), timeout=20)
    assert_openai_error(r, 422, "stop")


def test_error_messages_carry_no_server_paths(app):
    r = httpx.post(app["url"] + "/v1/chat/completions", json=body(model="nolineage"), headers=headers(), timeout=20)
    assert_openai_error(r, 404, "model")
    assert str(app["root"]) not in r.text and "/tmp" not in r.text, r.text


def test_tenant_over_its_cap_gets_429_and_others_are_unaffected(app):
    async def both():
        long = body(max_tokens=200, temperature=1.0, seed=1, stream=True)
        globex = post_all(app["url"], [long] * (GLOBEX_CAP + 4), tenant="globex")
        acme = post_all(app["url"], [long] * 4, tenant="acme")
        return await asyncio.gather(globex, acme)

    globex, acme = asyncio.run(both())
    codes = sorted(r.status_code for r in globex)
    assert set(codes) == {200, 429} and codes.count(200) >= GLOBEX_CAP, codes
    limited = next(r for r in globex if r.status_code == 429)
    assert_openai_error(limited, 429) and limited.headers["Retry-After"] == "1"
    assert limited.json()["error"]["code"] == "tenant_concurrency_limit"
    assert [r.status_code for r in acme] == [200] * 4
    assert all(r.text.rstrip().endswith("data: [DONE]") for r in acme)


def test_full_engine_queue_answers_429_with_retry_after(app):
    out = asyncio.run(post_all(app["url"], [body(max_tokens=200, temperature=1.0, seed=i) for i in range(40)]))
    codes = [r.status_code for r in out]
    assert set(codes) <= {200, 429} and codes.count(429) >= 1 and codes.count(200) >= 8, codes
    limited = next(r for r in out if r.status_code == 429)
    assert limited.headers["Retry-After"] and limited.json()["error"]["code"] == "queue_full"


def test_client_disconnect_stops_its_generation(app):
    before = app["engine"].stats.remote().result()["cancelled"]
    with httpx.stream("POST", app["url"] + "/v1/chat/completions", headers=headers(), timeout=20,
                      json=body(max_tokens=200, temperature=1.0, seed=7, stream=True)) as r:
        lines = r.iter_lines()
        next(lines), next(lines)  # the role chunk and the first token: then the client goes away
    deadline = time.time() + 15
    while time.time() < deadline and app["engine"].stats.remote().result()["cancelled"] == before:
        time.sleep(0.2)
    assert app["engine"].stats.remote().result()["cancelled"] == before + 1


def test_tenant_over_its_request_rate_gets_429_and_others_are_unaffected(app):
    """initech may start 0.2 requests/s (burst 1): of two requests back to back the second is refused with the
    bucket's Retry-After (5 s less the first request's time, rounded up) in OpenAI's shape, while acme's requests at
    the same moment all answer 200."""
    async def both():
        async with httpx.AsyncClient(timeout=60) as c:
            url = app["url"] + "/v1/chat/completions"
            first = await c.post(url, json=body(max_tokens=2), headers={"Authorization": f"Bearer {RATED_KEY}"})
            second, *acme = await asyncio.gather(
                c.post(url, json=body(max_tokens=2), headers={"Authorization": f"Bearer {RATED_KEY}"}),
                *(c.post(url, json=body(max_tokens=2), headers=headers()) for _ in range(3)))
            return first, second, acme

    first, second, acme = asyncio.run(both())
    assert first.status_code == 200, first.text
    assert_openai_error(second, 429)
    assert second.json()["error"]["code"] == "tenant_rate_limit" and second.headers["Retry-After"] in ("4", "5")
    assert 3000 < int(second.headers["retry-after-ms"]) <= 6000
    assert [r.status_code for r in acme] == [200] * 3


def test_replicas_run_user_code_on_their_own_event_loop(app):
    """user_code_on_replica_loop (default) reaches the replicas: their handlers run on the replica's loop, not on
    Serve's separate user-code thread."""
    for handle, method in ((app["engine"], "stats"), (app["ingress"], "replica_stats")):
        thread = getattr(handle, method).remote().result()["loop_thread"]
        assert "_run_user_code_event_loop" not in thread, thread
