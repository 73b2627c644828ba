"""``vllm.backend: ray_serve_llm`` without a running engine: the config's one-line refusals, the LLMConfig it builds, the
ingress client's mapping of LLMServer's answers, and the object-store adapter resolver (moto S3, no Ray)."""

from __future__ import annotations

import json

import pytest

from app.config.errors import ConfigError
from app.config.loader import load_config
from app.config.serve import ServeConfig
from app.serve.errors import BadRequest, EngineUnavailable, NotFound, Unprocessable
from app.serve.llmserver_client import error_from, model_id, parse_events
from app.serve.protocol import AdapterTarget
from tests.cluster.conftest import moto_s3  # noqa: F401 - the S3 server fixture, shared with the cluster tests

LLM = ["engine=vllm", "vllm.backend=ray_serve_llm"]


@pytest.mark.parametrize("overrides, says", [
    (["adapters.root=/srv/adapters"], "adapters.root='/srv/adapters' is not s3://"),
    ([], "needs vllm.lora_store or adapters.root"),
    (["vllm.lora_store=/srv/store"], "vllm.lora_store='/srv/store' is not s3://"),
    (["vllm.lora_store=s3://b/store", "adapters.root=s3://b/elsewhere"], "adapters.root='s3://b/elsewhere' is not under"),
    (["engine=hf", "adapters.root=s3://b/a"], "needs engine=vllm"),
])
def test_ray_serve_llm_refuses_what_it_cannot_serve_in_one_line(overrides, says):
    with pytest.raises(ConfigError) as info:
        load_config(None, ServeConfig, [*LLM, *overrides])
    assert says in str(info.value) and "\n" not in str(info.value)


def test_ray_serve_llm_accepts_object_store_adapters_and_the_default_backend_is_unchanged():
    cfg = load_config(None, ServeConfig, [*LLM, "adapters.root=s3://bucket/adapters/"])
    assert cfg.vllm.backend == "ray_serve_llm"
    cfg = load_config(None, ServeConfig, [*LLM, "adapters.kind=registry", "vllm.lora_store=gs://bucket/runs"])
    assert cfg.vllm.lora_store == "gs://bucket/runs"
    assert load_config(None, ServeConfig, ["adapters.root=/srv/adapters"]).vllm.backend == "rayalign"


def test_llm_config_carries_the_engine_settings_store_cpus_and_replica_env(monkeypatch):
    from ray.serve.llm import LLMConfig

    from app.serve.app import deployment_options, passed_env
    from app.serve.engine_llmserver import llm_config, split_options

    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9")
    cfg = load_config(None, ServeConfig, [*LLM, "adapters.root=s3://b/adapters", "adapters.pass_env=[AWS_ENDPOINT_URL_S3]",
                                          "vllm.max_loras=3", "vllm.max_cpu_loras=6", "vllm.max_num_seqs=12",
                                          "vllm.dtype=float32", "limits.max_model_len=640", "engine_deployment.num_cpus=2",
                                          "engine_deployment.max_queued_requests=7"])
    options, env = split_options(deployment_options(cfg.engine_deployment, passed_env(cfg)))
    built = LLMConfig(**llm_config(cfg, "/models/x", "base-x", env))
    kw = built.engine_kwargs
    assert (kw["max_loras"], kw["max_cpu_loras"], kw["max_num_seqs"], kw["dtype"], kw["max_model_len"]) == (3, 6, 12, "float32", 640)
    assert kw["generation_config"] == "vllm" and kw["enable_lora"] and kw["seed"] == 0
    assert built.lora_config.dynamic_lora_loading_path == "s3://b/adapters"
    assert built.lora_config.max_num_adapters_per_replica == 6
    assert built.placement_group_config == {"bundles": [{"CPU": 2.0}]}
    assert built.runtime_env["env_vars"]["AWS_ENDPOINT_URL_S3"] == "http://127.0.0.1:9"
    assert built.runtime_env["env_vars"]["RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD"] == "0"
    assert options["name"] == "Engine" and options["max_queued_requests"] == 7 and "ray_actor_options" not in options


def test_pass_env_reaches_both_deployments_runtime_env(monkeypatch):
    from app.serve.app import deployment_options, passed_env

    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    cfg = load_config(None, ServeConfig, ["adapters.pass_env=[AWS_ENDPOINT_URL, NOT_SET_ANYWHERE]"])
    env = deployment_options(cfg.ingress_deployment, passed_env(cfg))["ray_actor_options"]["runtime_env"]["env_vars"]
    assert env == {"RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0", "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}


def test_adapter_model_id_is_its_path_under_the_store_and_elsewhere_is_404():
    target = AdapterTarget(key="k", label="acme/alpha", uri="s3://b/adapters/acme/alpha/")
    assert model_id(target, "s3://b/adapters/", "base") == "base:acme/alpha"
    assert model_id(None, "s3://b/adapters", "base") == "base"
    with pytest.raises(NotFound, match="acme/alpha"):
        model_id(target.model_copy(update={"uri": "s3://other/acme/alpha"}), "s3://b/adapters", "base")
    with pytest.raises(NotFound):  # a sibling prefix sharing the store's name is not inside it
        model_id(target.model_copy(update={"uri": "s3://b/adapters-old/acme/alpha"}), "s3://b/adapters", "base")


def test_llmserver_answers_become_chunks_or_openai_errors():
    from ray.llm._internal.serve.core.configs.openai_api_models import ErrorInfo, ErrorResponse  # what LLMServer yields

    chunk = {"choices": [{"text": "Hi", "finish_reason": None}], "usage": {"completion_tokens": 1}}
    events = parse_events([f"data: {json.dumps(chunk)}\n\n", "data: [DONE]\n\n"])
    assert events == [chunk]
    refused = ErrorResponse(error=ErrorInfo(message="temperature must be >= 0", type="BadRequestError", param="temperature", code=400))
    with pytest.raises(BadRequest) as info:
        parse_events(refused)
    assert info.value.param == "temperature"
    with pytest.raises(Unprocessable):
        parse_events(['data: {"error": {"message": "bad", "code": 422}}\n\n'])
    with pytest.raises(EngineUnavailable):  # an engine-side failure stays 503, its message kept short
        parse_events(['data: {"error": {"message": "' + "x" * 1000 + '", "code": 500}}\n\n'])
    assert isinstance(error_from(404, "no such LoRA"), NotFound) and len(error_from(None, "y" * 999).message) < 300


def test_object_store_resolver_scopes_tenants_and_versions_by_content(moto_s3, tmp_path):  # noqa: F811
    from app.launch.storage import upload_folder
    from app.serve.resolver import build_resolver

    folder = tmp_path / "alpha"
    folder.mkdir()
    (folder / "adapter_config.json").write_text(json.dumps({"r": 4}))
    (folder / "adapter_model.safetensors").write_bytes(b"v1")
    root = f"s3://{moto_s3['bucket']}/adapters"
    upload_folder(folder, f"{root}/acme/alpha")
    resolver = build_resolver(load_config(None, ServeConfig, [f"adapters.root={root}"]))
    found = resolver.resolve("acme", "alpha")
    assert found.uri == f"{root}/acme/alpha" and resolver.list_names("acme") == ["alpha"]
    assert resolver.resolve("globex", "alpha") is None and resolver.list_names("globex") == []
    assert resolver.resolve("acme", "ghost") is None
    with pytest.raises(BadRequest):
        resolver.resolve("acme", "../globex")
    (folder / "adapter_model.safetensors").write_bytes(b"v2-longer")
    upload_folder(folder, f"{root}/acme/alpha")
    assert resolver.resolve("acme", "alpha").version != found.version  # a re-upload is a new version


def test_deploy_file_leaves_llmserver_resources_to_its_llm_config():
    """A `serve deploy` file overrides code options: an Engine ray_actor_options there would replace LLMServer's
    runtime_env (vLLM's CPU variables) and reserve a CPU outside its placement group."""
    from app.serve.app import serve_deploy_config

    cfg = load_config(None, ServeConfig, [*LLM, "adapters.root=s3://b/adapters"])
    engine, ingress = serve_deploy_config(cfg, "x.yaml")["applications"][0]["deployments"]
    assert "ray_actor_options" not in engine and engine["max_ongoing_requests"] == cfg.engine_deployment.max_ongoing_requests
    assert ingress["ray_actor_options"]["num_cpus"] == cfg.ingress_deployment.num_cpus
    plain = serve_deploy_config(load_config(None, ServeConfig, []), "x.yaml")["applications"][0]["deployments"][0]
    assert plain["ray_actor_options"]["num_cpus"] == 1.0
