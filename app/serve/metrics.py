"""Ray metrics for the serve path, per adapter (tag ``model`` = 'base' or '<tenant>/<adapter>'), named rayalign_serve_*.

They are exported by every Ray node's metrics agent (Prometheus format) and show on the Ray dashboard's metrics view.
"""

from __future__ import annotations

def replica_memory() -> dict:
    """This process's pid and resident memory (MiB): what a soak compares at start and end per replica; and the thread
    the caller runs on (from a replica's handler: the thread of its user-code event loop)."""
    import os
    import threading

    import psutil

    return {"pid": os.getpid(), "rss_mib": round(psutil.Process().memory_info().rss / 2**20, 1),
            "loop_thread": threading.current_thread().name}


_LATENCY_BOUNDS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60]
_TPS_BOUNDS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000]


class IngressMetrics:
    """Request counts, tokens, time-to-first-token, latency and tokens/s per model, recorded by the ingress."""

    def __init__(self):
        from ray.util import metrics

        tags = ("model", "tenant")
        self.requests = metrics.Counter(
            "rayalign_serve_requests_total", description="API requests by model, tenant and HTTP status",
            tag_keys=("model", "tenant", "status"),
        )
        self.tokens = metrics.Counter(
            "rayalign_serve_completion_tokens_total", description="generated tokens", tag_keys=tags
        )
        self.prompt_tokens = metrics.Counter(
            "rayalign_serve_prompt_tokens_total", description="prompt tokens", tag_keys=tags
        )
        self.ttft = metrics.Histogram(
            "rayalign_serve_ttft_seconds", description="time to first token", boundaries=_LATENCY_BOUNDS, tag_keys=tags
        )
        self.latency = metrics.Histogram(
            "rayalign_serve_request_seconds", description="request latency", boundaries=_LATENCY_BOUNDS, tag_keys=tags
        )
        self.tokens_per_s = metrics.Histogram(
            "rayalign_serve_tokens_per_second", description="per-request decode speed", boundaries=_TPS_BOUNDS,
            tag_keys=tags,
        )

    def record(self, model: str, tenant: str, status: int, *, prompt_tokens: int = 0, completion_tokens: int = 0,
               ttft_s: float | None = None, latency_s: float | None = None) -> None:
        tags = {"model": model, "tenant": tenant}
        self.requests.inc(1, tags={**tags, "status": str(status)})
        if status != 200:
            return
        self.tokens.inc(completion_tokens, tags=tags)
        self.prompt_tokens.inc(prompt_tokens, tags=tags)
        if ttft_s is not None:
            self.ttft.observe(ttft_s, tags=tags)
        if latency_s is not None:
            self.latency.observe(latency_s, tags=tags)
            if completion_tokens and latency_s > 0:
                self.tokens_per_s.observe(completion_tokens / latency_s, tags=tags)


class EngineMetrics:
    """Adapter load time and loaded-adapter count, recorded by engine replicas."""

    def __init__(self, engine: str):
        from ray.util import metrics

        self.engine = engine
        self.load_seconds = metrics.Histogram(
            "rayalign_serve_adapter_load_seconds", description="time to load one adapter into an engine replica",
            boundaries=_LATENCY_BOUNDS, tag_keys=("model", "engine"),
        )
        self.loaded = metrics.Gauge(
            "rayalign_serve_adapters_loaded", description="adapters resident on a replica", tag_keys=("engine",)
        )
        self.evictions = metrics.Counter(
            "rayalign_serve_adapter_evictions_total", description="adapters unloaded by the LRU", tag_keys=("engine",)
        )

    def loaded_adapter(self, model: str, seconds: float, resident: int) -> None:
        self.load_seconds.observe(seconds, tags={"model": model, "engine": self.engine})
        self.loaded.set(resident, tags={"engine": self.engine})

    def evicted(self, resident: int) -> None:
        self.evictions.inc(1, tags={"engine": self.engine})
        self.loaded.set(resident, tags={"engine": self.engine})
