"""The OpenAI-compatible API on the HF/peft engine with the tiny model, driven by the official `openai` client."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import openai
import pytest

from tests.serve.conftest import KEYS, make_adapter_root, percentiles, repoint, tenants_override

pytestmark = pytest.mark.ray
APP = "rayalign-hf-test"
BASE = "tiny-llama"


@pytest.fixture(scope="module")
def hf_app(serve_port, tiny_model_dir, tmp_path_factory):
    from ray import serve

    from app.config.loader import load_config
    from app.config.serve import ServeConfig
    from app.serve.app import build_app

    root = make_adapter_root(tmp_path_factory.mktemp("adapters"), tiny_model_dir, std=0.5, r=4)
    cfg = load_config(None, ServeConfig, [
        "model.source=tiny:llama", "engine=hf", f"adapters.root={root}", "hf.max_adapters_per_replica=2",
        "engine_deployment.num_cpus=0.5", "ingress_deployment.num_cpus=0.1", "limits.max_tokens=32",
        "limits.max_model_len=256", "limits.max_body_bytes=4096", *tenants_override(),
    ])
    serve.run(build_app(cfg), name=APP, route_prefix="/", blocking=False)
    url = f"http://127.0.0.1:{serve_port}"
    yield {"url": url, "root": root, "engine": serve.get_deployment_handle("Engine", APP)}
    serve.delete(APP)


def client(hf_app, tenant="acme", key=None) -> openai.OpenAI:
    return openai.OpenAI(base_url=hf_app["url"] + "/v1", api_key=key or KEYS[tenant], max_retries=0)


def chat(c: openai.OpenAI, model: str, text: str = "how many apples", **kw) -> str:
    out = c.chat.completions.create(model=model, messages=[{"role": "user", "content": text}], max_tokens=12, temperature=0, **kw)
    return out


def resident(hf_app) -> list[str]:
    return hf_app["engine"].stats.remote().result()["resident"]


def test_models_lists_base_and_own_adapters_only(hf_app):
    acme = {m.id for m in client(hf_app, "acme").models.list()}
    globex = {m.id for m in client(hf_app, "globex").models.list()}
    assert {BASE, "alpha", "beta", "promo"} <= acme and "gamma" not in acme
    assert globex == {BASE, "gamma"}


def test_base_and_two_adapters_answer_differently_with_usage(hf_app):
    c = client(hf_app)
    outs = {m: chat(c, m) for m in (BASE, "alpha", f"{BASE}:beta")}
    texts = {m: o.choices[0].message.content for m, o in outs.items()}
    assert len(set(texts.values())) == 3, texts
    for o in outs.values():
        assert o.usage.prompt_tokens > 0 and 0 < o.usage.completion_tokens <= 12
        assert o.usage.total_tokens == o.usage.prompt_tokens + o.usage.completion_tokens


def test_streaming_equals_non_streaming_and_reports_usage(hf_app):
    c = client(hf_app)
    full = chat(c, "alpha").choices[0].message.content
    stream = chat(c, "alpha", stream=True, stream_options={"include_usage": True})
    pieces, usage = [], None
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for choice in chunk.choices:
            pieces.append(choice.delta.content or "")
    assert "".join(pieces) == full and len([p for p in pieces if p]) > 1
    assert usage is not None and usage.completion_tokens > 0


def test_completions_endpoint(hf_app):
    out = client(hf_app).completions.create(model="beta", prompt="the number of", max_tokens=6, temperature=0)
    assert out.choices[0].text and out.usage.completion_tokens <= 6


def test_auth_and_tenant_isolation(hf_app):
    with pytest.raises(openai.AuthenticationError):
        client(hf_app, key="sk-wrong").models.list()
    r = httpx.post(hf_app["url"] + "/v1/chat/completions", json={"model": BASE, "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    with pytest.raises(openai.NotFoundError):  # globex cannot call (or even see) acme's adapter
        chat(client(hf_app, "globex"), "alpha")
    assert chat(client(hf_app, "globex"), "gamma").choices[0].message.content is not None


def test_user_errors_have_openai_shape_and_right_status(hf_app):
    c = client(hf_app)
    with pytest.raises(openai.NotFoundError) as e404:
        chat(c, "no-such-adapter")
    assert e404.value.body["code"] == "model_not_found"
    for bad in ("../globex/gamma", "Alpha/../../etc", f"{BASE}:../x"):
        with pytest.raises(openai.BadRequestError):
            chat(c, bad)
    with pytest.raises(openai.BadRequestError, match="max_tokens"):
        c.chat.completions.create(model=BASE, messages=[{"role": "user", "content": "hi"}], max_tokens=33)
    with pytest.raises(openai.BadRequestError, match="exceeds the context"):
        c.completions.create(model=BASE, prompt="the " * 250, max_tokens=32)
    with pytest.raises(openai.ConflictError, match="trained on base"):
        chat(c, "wrongbase")
    with pytest.raises(openai.UnprocessableEntityError):
        c.chat.completions.create(model=BASE, messages=[], max_tokens=4)
    headers = {"Authorization": f"Bearer {KEYS['acme']}", "Content-Type": "application/json"}
    r = httpx.post(hf_app["url"] + "/v1/chat/completions", content=b"{not json", headers=headers)
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    big = json.dumps({"model": BASE, "messages": [{"role": "user", "content": "x" * 5000}]})
    r = httpx.post(hf_app["url"] + "/v1/chat/completions", content=big, headers=headers)
    assert r.status_code == 413


def test_lru_really_unloads_and_unknown_adapter_evicts_nothing(hf_app):
    c = client(hf_app)
    chat(c, "alpha")
    chat(c, "beta")
    before = resident(hf_app)
    assert len(before) == 2 and any("alpha" in k for k in before) and any("beta" in k for k in before)
    with pytest.raises(openai.NotFoundError):
        chat(c, "ghost")
    assert resident(hf_app) == before  # the naive multiplexer would have evicted alpha here
    chat(client(hf_app, "globex"), "gamma")  # a third adapter: the least recently used (alpha) is unloaded
    after = resident(hf_app)
    assert len(after) == 2 and any("gamma" in k for k in after) and not any("alpha" in k for k in after)


def test_promote_and_rollback_without_redeploy(hf_app):
    c, link, versions = client(hf_app), hf_app["root"] / "acme" / "promo", hf_app["root"] / "acme" / "versions"
    v1 = chat(c, "promo").choices[0].message.content
    t0 = time.perf_counter()
    repoint(link, versions / "promo-v2")
    v2 = chat(c, "promo").choices[0].message.content
    switched = time.perf_counter() - t0
    repoint(link, versions / "promo-v1")
    assert v2 != v1 and chat(c, "promo").choices[0].message.content == v1
    print(f"promotion served after {switched:.2f}s (no redeploy)")
    assert switched < 10


def test_fifty_concurrent_mixed_adapter_requests(hf_app):
    c = openai.AsyncOpenAI(base_url=hf_app["url"] + "/v1", api_key=KEYS["acme"], max_retries=0)
    models = [BASE, "alpha", "beta", "promo"]

    async def one(i):
        t0 = time.perf_counter()
        await c.chat.completions.create(model=models[i % 4], messages=[{"role": "user", "content": f"count {i}"}], max_tokens=8, temperature=0)
        return time.perf_counter() - t0

    async def main():
        return await asyncio.gather(*(one(i) for i in range(50)), return_exceptions=True)

    results = asyncio.run(main())
    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, errors[:3]
    p50, p99 = percentiles(results)
    print(f"HF engine, 50 concurrent mixed-adapter requests: 0 errors, p50 {p50:.2f}s p99 {p99:.2f}s")
