"""Schema for `rayalign serve`: a Ray Serve app (OpenAI-compatible ingress + vLLM or HF/peft engine) with multi-LoRA."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from app.config.base import StrictModel
from app.config.common import ModelSpec, RaySpec


class TenantSpec(StrictModel):
    """One tenant: who may call, and whose adapters they see (``<adapter root>/<tenant>/<adapter>``)."""

    name: str = Field("default", pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$", description="tenant id (also its adapter folder name)")
    api_key_sha256: list[str] = Field(
        default_factory=list, description="sha256 hex digests of the tenant's API keys (plaintext keys never live in configs)"
    )
    api_key_env: str | None = Field(None, description="environment variable holding one plaintext key (dev convenience)")
    max_concurrent_requests: int | None = Field(
        None, ge=1, description="requests this tenant may have in flight per ingress replica (over it: 429; None: no cap)"
    )
    max_requests_per_s: float | None = Field(
        None, gt=0, description="requests this tenant may start per second per ingress replica, a token bucket (over it: "
        "429 + Retry-After, before the body is read; None: no rate limit). The concurrency cap bounds how many run at "
        "once, this bounds how much work a tenant of short requests gets through",
    )
    burst: int | None = Field(
        None, ge=1, description="requests above max_requests_per_s a tenant may start at once after idling (None: "
        "max(1, ceil(max_requests_per_s)))",
    )


class AdapterSourceSpec(StrictModel):
    """Where adapter names resolve to adapter folders (local path or s3:// URI)."""

    kind: Literal["auto", "directory", "registry", "factory"] = Field(
        "auto",
        description="'directory': <root>/<tenant>/<name> (a symlink re-pointed = promote/rollback); 'registry': the "
        "registry's production/canary versions and ft: job model ids, read per request; 'auto': directory when "
        "root is set, else registry then the default folder when a registry database exists; "
        "'factory': an import string building an AdapterResolver",
    )
    registry_url: str | None = Field(None, description="registry database URL (None: sqlite <home>/registry.db)")
    refresh_s: float = Field(0.0, ge=0, description="registry resolver: seconds a name's routing may be cached (0: read per request, so a rollback applies to the next request)")
    root: str | None = Field(None, description="adapter root: a folder, or an object-store prefix "
                                "(s3://bucket/adapters: <root>/<tenant>/<name>/ read per request) (None: <rayalign home>/adapters)")
    factory: str | None = Field(None, description="'module:function' returning an AdapterResolver (kind=factory)")
    cache_dir: str | None = Field(None, description="local copy of remote (s3://) adapters (None: <home>/serve/adapter-cache)")
    download_timeout_s: float = Field(
        120.0, gt=0, description="a remote adapter download slower than this fails that request (503) and is abandoned"
    )
    pass_env: list[str] = Field(
        default_factory=list, description="environment variables copied from the process that builds the app into the "
        "ingress and engine replicas' runtime_env (e.g. AWS_ENDPOINT_URL for a MinIO/moto adapter store). Under `serve "
        "deploy` they are read where the app is built on the cluster, never written into the generated file; prefer "
        "node-level credentials in production",
    )

    @model_validator(mode="after")
    def _factory_needs_import_string(self):
        if self.kind == "factory" and not (self.factory and ":" in self.factory):
            raise ValueError("adapters.kind=factory needs adapters.factory='module:function'")
        return self


class LimitsSpec(StrictModel):
    """Request bounds enforced by the ingress before anything reaches an engine."""

    max_body_bytes: int = Field(65536, ge=1024, description="largest accepted request body (413 above)")
    max_tokens: int = Field(512, ge=1, description="largest max_tokens a request may ask for (400 above)")
    default_max_tokens: int = Field(128, ge=1, description="max_tokens when a request gives none")
    max_model_len: int = Field(2048, ge=64, description="prompt + completion tokens per request (400 above)")
    request_timeout_s: float | None = Field(
        300.0, gt=0, description="a request (a whole stream included) running longer is cancelled and answered 504"
    )


class DeploymentSpec(StrictModel):
    """Ray Serve options for one deployment (replicas, autoscaling, resources, health checks)."""

    min_replicas: int = Field(1, ge=0, description="autoscaling lower bound")
    max_replicas: int = Field(1, ge=1, description="autoscaling upper bound")
    target_ongoing_requests: float = Field(8.0, gt=0, description="autoscaling target of in-flight requests per replica")
    max_ongoing_requests: int = Field(64, ge=1, description="requests one replica accepts at once (queue beyond)")
    max_queued_requests: int = Field(
        -1, ge=-1, description="requests queued per caller beyond max_ongoing_requests (over it: 429 + Retry-After; -1: unbounded)"
    )
    retry_after_s: int = Field(1, ge=1, description="Retry-After seconds sent with a 429 for a full queue")
    upscale_delay_s: float = Field(30.0, ge=0, description="autoscaling: load must stay above target this long to add replicas")
    downscale_delay_s: float = Field(600.0, ge=0, description="autoscaling: load must stay below target this long to drop replicas")
    look_back_period_s: float = Field(30.0, gt=0, description="autoscaling: window over which ongoing requests are averaged")
    num_cpus: float = Field(1.0, gt=0, description="CPUs reserved per replica")
    health_check_period_s: float = Field(10.0, gt=0, description="seconds between replica health checks")
    health_check_timeout_s: float = Field(30.0, gt=0, description="a health check slower than this marks the replica unhealthy")
    user_code_on_replica_loop: bool = Field(
        True, description="run this deployment's code on the replica's own event loop (Ray Serve's "
        "RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD=0, set for its replicas only): one thread hop less per request, "
        "less CPU per request (measured in docs/serving.md); false: Serve's default separate user-code thread",
    )


class VLLMSpec(StrictModel):
    """vLLM engine knobs (multi-LoRA batching)."""

    max_loras: int = Field(4, ge=1, description="distinct adapters in one batch")
    max_cpu_loras: int = Field(8, ge=1, description="adapters kept loaded per replica (LRU; evicted ones are removed)")
    max_lora_rank: int = Field(16, ge=1, description="largest adapter rank accepted")
    max_num_seqs: int = Field(32, ge=1, description="sequences per engine step")
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field("bfloat16", description="compute dtype")
    cpu_kvcache_gib: int = Field(1, ge=1, description="VLLM_CPU_KVCACHE_SPACE: KV cache size on CPU (GiB)")
    # 'all', not vLLM's 'auto': auto keeps one core per rank for the scheduler process, which on a 2-core replica
    # leaves the model a single core (offline SmolLM2 + LoRA, 16 seqs, fp32: 43 tok/s auto vs 57 tok/s on both cores).
    cpu_omp_threads_bind: str = Field(
        "all", description="VLLM_CPU_OMP_THREADS_BIND: 'all' (every CPU the replica may run on), 'auto', 'nobind', '0-3', ..."
    )
    enforce_eager: bool = Field(True, description="skip graph capture/compilation (faster start on CPU)")
    backend: Literal["rayalign", "ray_serve_llm"] = Field(
        "rayalign", description="'rayalign': this project's VLLMEngine deployment; 'ray_serve_llm': Ray's "
        "ray.serve.llm LLMServer (LoRA multiplexing from an object store) behind the same tenant/auth ingress",
    )
    lora_store: str | None = Field(
        None, description="ray_serve_llm: the object-store prefix (s3://, gs://, abfss://, azure://) every adapter lives "
        "under (LLMConfig.lora_config.dynamic_lora_loading_path); None: adapters.root",
    )


class HFSpec(StrictModel):
    """HF/peft fallback engine knobs (Serve multiplexing + mixed-adapter batches)."""

    max_adapters_per_replica: int = Field(4, ge=1, description="adapters loaded per replica (Serve multiplexed LRU)")
    max_batch_size: int = Field(8, ge=1, description="requests generated together (any mix of adapters)")
    batch_wait_timeout_s: float = Field(0.02, ge=0, description="how long a batch waits to fill")
    stream_interval_s: float = Field(
        0.05, ge=0, le=1, description="after its first chunk (the first token, sent at once), a stream sends at most one "
        "chunk per interval (the tokens made meanwhile go together: fewer messages through proxy and ingress, each of "
        "which costs CPU whatever its size); 0: every token as it comes",
    )
    num_threads: int | None = Field(None, ge=1, description="torch threads in the replica (None: the replica's CPUs)")


class HTTPSpec(StrictModel):
    """Where the OpenAI-compatible API listens."""

    host: str = Field("127.0.0.1", description="bind address of the Serve HTTP proxy")
    port: int = Field(8000, ge=0, le=65535, description="HTTP port (0: pick a free one)")
    route_prefix: str = Field("/", description="URL prefix of the app")


class ServeConfig(StrictModel):
    """A multi-LoRA OpenAI-compatible endpoint on Ray Serve."""

    model: ModelSpec = Field(default_factory=ModelSpec, description="the shared base model")
    served_name: str | None = Field(
        None, pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$", description="base model name in the API (None: derived from source)"
    )
    engine: Literal["vllm", "hf"] = Field("vllm", description="'vllm' (multi-LoRA batching) or 'hf' (peft fallback)")
    app_name: str = Field("rayalign", description="Ray Serve application name")
    adapters: AdapterSourceSpec = Field(default_factory=AdapterSourceSpec, description="adapter name resolution")
    tenants: list[TenantSpec] = Field(default_factory=list, description="API keys and tenants (empty: every call is 401)")
    limits: LimitsSpec = Field(default_factory=LimitsSpec, description="request bounds")
    vllm: VLLMSpec = Field(default_factory=VLLMSpec, description="vLLM engine settings")
    hf: HFSpec = Field(default_factory=HFSpec, description="HF/peft engine settings")
    engine_deployment: DeploymentSpec = Field(default_factory=DeploymentSpec, description="engine replicas")
    ingress_deployment: DeploymentSpec = Field(
        default_factory=lambda: DeploymentSpec(num_cpus=0.1, max_replicas=2, target_ongoing_requests=32, max_ongoing_requests=256),
        description="ingress replicas",
    )
    http: HTTPSpec = Field(default_factory=HTTPSpec, description="HTTP listener")
    ray: RaySpec = Field(default_factory=RaySpec, description="Ray cluster")

    @property
    def uses_llmserver(self) -> bool:
        """Whether the Engine is ray.serve.llm's LLMServer (``vllm.backend: ray_serve_llm``; validated to need engine=vllm)."""
        return self.engine == "vllm" and self.vllm.backend == "ray_serve_llm"

    @model_validator(mode="after")
    def _ray_serve_llm_needs_an_object_store(self):
        if self.vllm.backend != "ray_serve_llm":
            return self
        if self.engine != "vllm":
            raise ValueError(f"vllm.backend=ray_serve_llm needs engine=vllm (got engine={self.engine})")
        key, store = ("vllm.lora_store", self.vllm.lora_store) if self.vllm.lora_store else ("adapters.root", self.adapters.root)
        if store is None:
            raise ValueError("vllm.backend=ray_serve_llm needs vllm.lora_store or adapters.root: the object-store prefix "
                             "(s3://...) its adapters live under")
        if not is_object_store(store):
            raise ValueError(f"vllm.backend=ray_serve_llm loads adapters only from an object store (ray.serve.llm refuses "
                             f"a local dynamic_lora_loading_path): {key}={store!r} is not s3://, gs://, abfss:// or "
                             f"azure://; upload the adapters there, or use vllm.backend=rayalign")
        root = self.adapters.root
        if key == "vllm.lora_store" and root and self.adapters.kind in ("auto", "directory"):
            if not (is_object_store(root) and root.rstrip("/").startswith(store.rstrip("/"))):
                raise ValueError(f"vllm.backend=ray_serve_llm: adapters.root={root!r} is not under vllm.lora_store={store!r}")
        return self


OBJECT_STORE_SCHEMES = ("s3://", "gs://", "abfss://", "azure://")  # what ray.serve.llm's LoraConfig accepts


def is_object_store(uri: str) -> bool:
    """Whether ``uri`` names an object-store location ray.serve.llm can load adapters from."""
    return uri.startswith(OBJECT_STORE_SCHEMES)
