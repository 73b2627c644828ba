"""``vllm.backend: ray_serve_llm``: ray.serve.llm's LLMServer (vLLM, LoRA from S3) behind this project's ingress.

SmolLM2 + real peft adapters uploaded to a moto S3 server (``<root>/<tenant>/<name>/``), served through the tenant/auth
ingress: keys, tenant isolation, the lineage check and request validation answer as on the other engines; a valid
stream runs the tenant's adapter on LLMServer (its text differs from the base's) and ends with ``[DONE]``; a client
that leaves closes its LLMServer stream. e2e: vLLM start-up is ~40 s on 2 cores.
"""

from __future__ import annotations

import json
import os

import httpx
import openai
import pytest

from tests.cluster.conftest import moto_s3  # noqa: F401 - the S3 server fixture, shared with the cluster tests
from tests.serve.conftest import KEYS, leave_mid_stream, make_adapter_root, tenants_override

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.e2e]
APP = "rayalign-llmserver-test"
BASE = "smollm2-135m-instruct"
QUESTION = [{"role": "user", "content": "Name one fruit and say why you like it."}]
PASS_ENV = ["AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"]


@pytest.fixture(scope="module")
def llm_app(moto_s3, serve_port, shared, tmp_path_factory):  # noqa: F811 - the fixture imported above
    from ray import serve

    from app.config.loader import load_config
    from app.config.serve import ServeConfig
    from app.launch.storage import upload_folder
    from app.models.loader import resolve_model
    from app.serve.app import build_app

    os.environ["AWS_ENDPOINT_URL_S3"] = moto_s3["endpoint"]  # ray.serve.llm's LoRA download reads this one
    base = resolve_model(f"bundled:{BASE}")
    local = make_adapter_root(tmp_path_factory.mktemp("adapters"), base.path, std=0.05, r=8)
    root = f"s3://{moto_s3['bucket']}/adapters"
    for tenant, name in (("acme", "alpha"), ("acme", "wrongbase"), ("globex", "gamma")):
        upload_folder(local / tenant / name, f"{root}/{tenant}/{name}")
    cfg = load_config(None, ServeConfig, [
        "engine=vllm", "vllm.backend=ray_serve_llm", f"adapters.root={root}", f"adapters.pass_env={json.dumps(PASS_ENV)}",
        "limits.max_model_len=512", "limits.max_tokens=64", "vllm.max_loras=2", "vllm.max_cpu_loras=4",
        "vllm.max_lora_rank=8", "vllm.max_num_seqs=8", "vllm.dtype=float32", "engine_deployment.num_cpus=1",
        "engine_deployment.max_replicas=1", "ingress_deployment.num_cpus=0.1", *tenants_override(),
    ])
    serve.run(build_app(cfg), name=APP, route_prefix="/", blocking=False)
    yield f"http://127.0.0.1:{serve_port}/v1"
    serve.delete(APP)
    os.environ.pop("AWS_ENDPOINT_URL_S3", None)


def test_auth_tenants_and_bad_requests_answer_in_openai_shape(llm_app):
    r = httpx.post(f"{llm_app}/chat/completions", json={"model": "alpha", "messages": QUESTION})  # no key
    assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
    globex = openai.OpenAI(base_url=llm_app, api_key=KEYS["globex"], max_retries=0)
    with pytest.raises(openai.NotFoundError):  # acme's adapter does not exist for globex
        globex.chat.completions.create(model="alpha", messages=QUESTION, max_tokens=4)
    assert {m.id for m in globex.models.list()} == {BASE, "gamma"}
    acme = openai.OpenAI(base_url=llm_app, api_key=KEYS["acme"], max_retries=0)
    with pytest.raises(openai.UnprocessableEntityError, match="stop"):
        acme.chat.completions.create(model="alpha", messages=QUESTION, max_tokens=4, stop=["a", "b", "c", "d", "e"])
    with pytest.raises(openai.ConflictError):  # lineage: trained on another base
        acme.chat.completions.create(model="wrongbase", messages=QUESTION, max_tokens=4)
    r = httpx.post(f"{llm_app}/chat/completions", headers={"Authorization": f"Bearer {KEYS['acme']}"},
                   json={"model": "alpha", "messages": QUESTION, "max_tokens": 4, "seed": 2**70, "stream": True})
    assert r.status_code == 422 and r.json()["error"]["param"] == "seed" and "/" not in r.json()["error"]["message"]


def test_adapter_streams_through_llmserver_and_a_leaving_client_closes_its_stream(llm_app):
    from ray import serve

    acme = openai.OpenAI(base_url=llm_app, api_key=KEYS["acme"], max_retries=0, timeout=120)
    base_text = acme.chat.completions.create(model=BASE, messages=QUESTION, max_tokens=16, temperature=0).choices[0].message.content
    pieces, usage = [], None
    for chunk in acme.chat.completions.create(model="alpha", messages=QUESTION, max_tokens=16, temperature=0,
                                              stream=True, stream_options={"include_usage": True}):
        pieces += [chunk.choices[0].delta.content or ""] if chunk.choices else []
        usage = chunk.usage or usage
    text = "".join(pieces)
    whole = acme.chat.completions.create(model="alpha", messages=QUESTION, max_tokens=16, temperature=0)
    print("LLMServer outputs:", {"base": base_text, "alpha": text})
    assert text and text == whole.choices[0].message.content and text != base_text  # the adapter ran, same greedy text
    assert usage.completion_tokens == whole.usage.completion_tokens > 0
    body = {"model": "alpha", "messages": QUESTION, "max_tokens": 64, "temperature": 0, "stream": True}
    stats = leave_mid_stream(serve.get_deployment_handle("Engine", APP), llm_app, KEYS["acme"], body)
    assert stats["cancelled"] == stats["cancelled_before"] + 1, stats
