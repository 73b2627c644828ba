"""The serve schema, the generated `serve deploy` file (validated by Ray's own schema) and the CLI verb."""

from __future__ import annotations

import pytest

from app.config.errors import ConfigError
from app.config.loader import load_config
from app.config.paths import REPO_ROOT
from app.config.serve import ServeConfig

CONFIG = REPO_ROOT / "configs" / "serve" / "smollm2_vllm.yaml"


def test_deploy_config_validates_against_ray_schema():
    from ray.serve.schema import ServeDeploySchema

    from app.serve.app import serve_deploy_config

    cfg = load_config(CONFIG, ServeConfig)
    body = serve_deploy_config(cfg, "configs/serve/smollm2_vllm.yaml")
    schema = ServeDeploySchema.model_validate(body) if hasattr(ServeDeploySchema, "model_validate") else ServeDeploySchema.parse_obj(body)
    app = schema.applications[0]
    engine = next(d for d in app.deployments if d.name == "Engine")
    assert app.import_path == "app.serve.app:app_builder"
    assert engine.autoscaling_config["max_replicas"] == cfg.engine_deployment.max_replicas
    assert engine.health_check_period_s == cfg.engine_deployment.health_check_period_s


def test_replicas_run_user_code_on_their_own_loop_unless_turned_off():
    """Serve's same-loop setting reaches each replica through its runtime_env (the replica process reads it), by
    default for both deployments, and is absent when a deployment turns it off."""
    from app.serve.app import deployment_options

    cfg = load_config(None, ServeConfig, ["ingress_deployment.user_code_on_replica_loop=false"])
    engine, ingress = deployment_options(cfg.engine_deployment), deployment_options(cfg.ingress_deployment)
    assert engine["ray_actor_options"]["runtime_env"] == {"env_vars": {"RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0"}}
    assert "runtime_env" not in ingress["ray_actor_options"] and ServeConfig().ingress_deployment.user_code_on_replica_loop


def test_cli_writes_deploy_file(tmp_path):
    import yaml

    from app.cli import main

    out = tmp_path / "deploy.yaml"
    assert main(["serve", "--config", str(CONFIG), "engine=hf", "--deploy-config", str(out)]) == 0
    body = yaml.safe_load(out.read_text())
    assert body["applications"][0]["args"] == {"config": str(CONFIG), "overrides": ["engine=hf"]}


def test_factory_resolver_needs_import_string():
    with pytest.raises(ConfigError, match="adapters.factory"):
        load_config(None, ServeConfig, ["adapters.kind=factory"])


def test_committed_deploy_file_is_current():
    import yaml

    from app.serve.app import serve_deploy_config

    committed = yaml.safe_load((CONFIG.parent / "smollm2_vllm.deploy.yml").read_text())
    assert committed == serve_deploy_config(load_config(CONFIG, ServeConfig), "configs/serve/smollm2_vllm.yaml")


def test_omp_threads_bind_all_means_every_allowed_cpu():
    import os

    from app.models.vllm_cpu_env import omp_threads_bind

    assert ServeConfig().vllm.cpu_omp_threads_bind == "all"
    assert [int(c) for c in omp_threads_bind("all").split(",")] == sorted(os.sched_getaffinity(0))
    assert omp_threads_bind("auto") == "auto" and omp_threads_bind("0-3") == "0-3"


def test_vllm_cpu_env_is_set_once_and_never_overrides_the_operator(monkeypatch):
    """Serve and the PPO rollout engine share one setter: 'all' binds every allowed CPU; an explicit env var wins."""
    import os

    from app.config.ppo import RolloutSpec
    from app.models.vllm_cpu_env import set_vllm_cpu_env

    monkeypatch.delenv("VLLM_CPU_OMP_THREADS_BIND", raising=False)
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "7")
    set_vllm_cpu_env(2, RolloutSpec().vllm_cpu_threads_bind)
    assert os.environ["VLLM_CPU_KVCACHE_SPACE"] == "7"
    assert os.environ["VLLM_CPU_OMP_THREADS_BIND"] == ",".join(str(c) for c in sorted(os.sched_getaffinity(0)))
