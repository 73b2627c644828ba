"""The vLLM engine as ray.serve.llm's ``LLMServer`` (``vllm.backend: ray_serve_llm``), behind this project's ingress.

``build_llm_engine(cfg)`` turns a ServeConfig into an ``LLMConfig`` and deploys it with ``build_llm_deployment`` as the
``Engine`` deployment: the same vLLM settings as ``VLLMEngine`` (dtype, max_model_len, LoRA slots and rank,
max_num_seqs, seed 0, enforce_eager, CPU KV cache and thread binding), LoRA multiplexing from
``lora_config.dynamic_lora_loading_path`` (the object-store prefix ``vllm.lora_store`` or ``adapters.root``; adapters
are downloaded per replica by ray.serve.llm and held in Serve's multiplexed LRU of ``max(max_cpu_loras, max_loras)``),
and the Serve options of ``engine_deployment`` (autoscaling, queue bounds with 429 backpressure, health checks). The
engine's CPUs are its placement group bundle (``engine_deployment.num_cpus``), the replica actor itself reserves none.
``generation_config="vllm"``: sampling defaults are vLLM's, not the model's generation_config.json, as in VLLMEngine
(which builds SamplingParams itself).

The ingress (app/serve/llmserver_client.py) sends ``LLMServer.completions`` requests with the prompt as token ids and
the adapter's multiplexed model id ``<served base>:<path under the store>``. ``TenantLLMServer`` adds what the
benchmarks and tests read from an engine: ``stats()`` (resident memory, streams the caller closed early).
"""

from __future__ import annotations

from typing import Any

from ray.serve.llm import LLMConfig, LLMServer, build_llm_deployment

from app.config.serve import ServeConfig
from app.serve.llmserver_client import lora_store
from app.serve.metrics import replica_memory


class TenantLLMServer(LLMServer):
    """``LLMServer`` plus ``stats()``: a completions stream closed before its end (the caller left, or timed out) is
    counted as ``cancelled``; closing it cancels ray.serve.llm's reader task and so the vLLM request (AsyncLLM aborts a
    generation whose consumer is cancelled)."""

    cancelled = 0

    async def completions(self, request, raw_request_info=None):
        stream = await super().completions(request, raw_request_info)
        return self._watch(stream) if getattr(request, "stream", False) else stream

    async def _watch(self, stream):
        finished = False
        try:
            async for item in stream:
                yield item
            finished = True
        finally:
            if not finished:
                TenantLLMServer.cancelled += 1
                await stream.aclose()  # its finally cancels the reader task, hence the vLLM request

    async def stats(self) -> dict:
        return {"engine": "ray_serve_llm", "cancelled": TenantLLMServer.cancelled, **replica_memory()}


def llm_config(cfg: ServeConfig, model_dir: str, served_name: str, env: dict[str, str] | None = None) -> dict:
    """The ``LLMConfig`` (as a dict) for ``cfg``: the vLLM engine arguments VLLMEngine uses, on the engine's CPUs;
    ``env``: more variables for the replica (the same-loop setting, ``adapters.pass_env``)."""
    from app.models.vllm_cpu_env import omp_threads_bind

    v, spec = cfg.vllm, cfg.engine_deployment
    slots = max(v.max_cpu_loras, v.max_loras)
    env_vars = {"VLLM_CPU_KVCACHE_SPACE": str(v.cpu_kvcache_gib), "VLLM_CPU_OMP_THREADS_BIND": omp_threads_bind(v.cpu_omp_threads_bind),
                **(env or {})}
    return {
        "model_loading_config": {"model_id": served_name, "model_source": model_dir},
        "accelerator_config": {"kind": "cpu"},  # as VLLMEngine's deployment, which reserves CPUs only
        "placement_group_config": {"bundles": [{"CPU": spec.num_cpus}]},
        "engine_kwargs": {"dtype": v.dtype, "max_model_len": cfg.limits.max_model_len, "enable_lora": True,
                          "max_loras": v.max_loras, "max_cpu_loras": slots, "max_lora_rank": v.max_lora_rank,
                          "max_num_seqs": v.max_num_seqs, "enforce_eager": v.enforce_eager, "seed": 0,
                          "generation_config": "vllm"},
        "lora_config": {"dynamic_lora_loading_path": lora_store(cfg), "max_num_adapters_per_replica": slots,
                        "download_timeout_s": cfg.adapters.download_timeout_s},
        "deployment_config": {"ray_actor_options": {"num_cpus": 0}},
        "runtime_env": {"env_vars": env_vars},
    }


def split_options(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """app.serve.app's ``deployment_options`` of the engine → (Serve options for ``build_llm_deployment``, the
    replica's env vars); its resources come from the LLMConfig's placement group, not ``ray_actor_options``."""
    options = dict(options)
    actor = options.pop("ray_actor_options", {})
    return {"name": "Engine", **options}, dict(actor.get("runtime_env", {}).get("env_vars", {}))


def build_llm_engine(cfg: ServeConfig, options: dict[str, Any]):
    """The bound ``Engine`` deployment: ``TenantLLMServer`` for ``cfg`` with the engine's Serve ``options``."""
    from app.config.paths import rayalign_home
    from app.models.loader import resolve_model
    from app.models.vllm_cpu_env import vllm_model_dir
    from app.serve.names import served_name_for

    model_dir = vllm_model_dir(resolve_model(cfg.model).path, rayalign_home() / "serve" / "vllm-views")
    serve_options, env = split_options(options)
    config = LLMConfig(**llm_config(cfg, str(model_dir), served_name_for(cfg.model.source, cfg.served_name), env))
    return build_llm_deployment(config, deployment_cls=TenantLLMServer, override_serve_options=serve_options)
