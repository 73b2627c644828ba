"""Assemble the Ray Serve application (Ingress → Engine) from a ServeConfig, run it, or emit a `serve deploy` file.

    serve run app.serve.app:app_builder config=configs/serve/smollm2_vllm.yaml     # Ray Serve CLI
    rayalign serve --config configs/serve/smollm2_vllm.yaml                         # same app, blocking
"""

from __future__ import annotations

import os
from typing import Any

from app.config.serve import DeploymentSpec, ServeConfig

IMPORT_PATH = "app.serve.app:app_builder"


def deployment_options(spec: DeploymentSpec, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Serve deployment options (autoscaling, health checks, resources) for one deployment."""
    return {
        "autoscaling_config": {
            "min_replicas": spec.min_replicas,
            "initial_replicas": max(spec.min_replicas, 1),
            "max_replicas": spec.max_replicas,
            "target_ongoing_requests": spec.target_ongoing_requests,
            "upscale_delay_s": spec.upscale_delay_s,
            "downscale_delay_s": spec.downscale_delay_s,
            "look_back_period_s": spec.look_back_period_s,
        },
        "max_ongoing_requests": spec.max_ongoing_requests,
        "max_queued_requests": spec.max_queued_requests,
        "backpressure_config": {"status_code": 429, "retry_after_s": spec.retry_after_s},
        "health_check_period_s": spec.health_check_period_s,
        "health_check_timeout_s": spec.health_check_timeout_s,
        "ray_actor_options": {"num_cpus": spec.num_cpus, **replica_runtime_env(spec, env)},
    }


def replica_runtime_env(spec: DeploymentSpec, env: dict[str, str] | None = None) -> dict[str, Any]:
    """``runtime_env`` for a deployment's replicas: Serve reads RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD in each
    replica process, so the setting applies to these replicas only, not to the proxy or other apps; ``env``: more
    variables for them (``adapters.pass_env``)."""
    env_vars = {"RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0"} if spec.user_code_on_replica_loop else {}
    env_vars.update(env or {})
    return {"runtime_env": {"env_vars": env_vars}} if env_vars else {}


def passed_env(cfg: ServeConfig) -> dict[str, str]:
    """``adapters.pass_env``: those of the named variables set in this process."""
    return {k: os.environ[k] for k in cfg.adapters.pass_env if k in os.environ}


def build_app(cfg: ServeConfig):
    """The bound application: an Ingress deployment holding a handle to the Engine deployment."""
    from ray import serve

    from app.serve.ingress import Ingress

    data, env = cfg.model_dump(mode="json"), passed_env(cfg)
    if cfg.uses_llmserver:  # ray.serve.llm's LLMServer as the Engine
        from app.serve.engine_llmserver import build_llm_engine

        engine = build_llm_engine(cfg, deployment_options(cfg.engine_deployment, env))
    else:
        if cfg.engine == "vllm":
            from app.serve.engine_vllm import VLLMEngine as engine_cls
        else:
            from app.serve.engine_hf import HFEngine as engine_cls
        engine = serve.deployment(name="Engine", **deployment_options(cfg.engine_deployment, env))(engine_cls).bind(data)
    return serve.deployment(name="Ingress", **deployment_options(cfg.ingress_deployment, env))(Ingress).bind(engine, data)


def app_builder(args: dict[str, Any]):
    """`serve run`/`serve deploy` entry: ``args = {"config": path, "overrides": ["k=v", ...]}``."""
    from app.config.loader import load_config

    overrides = args.get("overrides") or []
    if isinstance(overrides, str):
        overrides = overrides.split()
    return build_app(load_config(args["config"], ServeConfig, overrides))


def run_app(cfg: ServeConfig, *, blocking: bool = False) -> str:
    """Start Serve's HTTP proxy (if not running) and deploy the app; returns the base URL of the OpenAI API."""
    from ray import serve

    from app.launch.runtime import init_ray

    init_ray(cfg.ray)
    serve.start(http_options={"host": cfg.http.host, "port": cfg.http.port})
    serve.run(build_app(cfg), name=cfg.app_name, route_prefix=cfg.http.route_prefix, blocking=False)
    url = f"http://{cfg.http.host}:{cfg.http.port}{cfg.http.route_prefix.rstrip('/')}/v1"
    if blocking:
        import time

        print(f"serving {cfg.app_name} at {url} (Ctrl-C stops)", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            serve.shutdown()
    return url


def serve_deploy_config(cfg: ServeConfig, config_path: str) -> dict[str, Any]:
    """A `serve deploy` / `serve run` config file (also a KubeRay RayService ``serveConfigV2``) for this ServeConfig."""
    deployments = []
    for name, spec in (("Engine", cfg.engine_deployment), ("Ingress", cfg.ingress_deployment)):
        options = deployment_options(spec)
        if name == "Engine" and cfg.uses_llmserver:
            options.pop("ray_actor_options")  # LLMServer's CPUs and env come from its LLMConfig (placement group, runtime_env)
        deployments.append({"name": name, **options})
    return {
        "proxy_location": "EveryNode",
        "http_options": {"host": cfg.http.host, "port": cfg.http.port},
        "applications": [
            {
                "name": cfg.app_name,
                "route_prefix": cfg.http.route_prefix,
                "import_path": IMPORT_PATH,
                "args": {"config": config_path},
                "deployments": deployments,
            }
        ],
    }
