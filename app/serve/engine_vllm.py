"""vLLM engine: one AsyncLLM with ``enable_lora``; requests for different adapters share every batch.

vLLM keeps up to ``max_loras`` adapters active per batch and ``max_cpu_loras`` loaded; this deployment keeps its own
LRU of adapter versions over the same budget (``AdapterPool``: pinned while a request runs, released in a ``finally``,
no lock across the download or ``add_lora``) and calls ``remove_lora`` on eviction (so an old version of a promoted
adapter is really dropped), and measures adapter load time with an explicit ``add_lora``. Sampling parameters are
built (and refused with 400) before an adapter is pinned; a client that leaves aborts its vLLM request.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import AsyncIterator

from app.models.vllm_cpu_env import vllm_model_dir
from app.serve.adapter_pool import AdapterPool
from app.serve.adapter_store import materialize_async
from app.serve.errors import BadRequest, EngineUnavailable, NotFound, ServeError
from app.serve.metrics import replica_memory
from app.serve.protocol import EngineRequest


class VLLMEngine:
    """A Serve deployment class wrapping ``vllm.v1.engine.async_llm.AsyncLLM``."""

    def __init__(self, config: dict):
        from app.config.paths import rayalign_home
        from app.config.serve import ServeConfig
        from app.models.loader import resolve_model
        from app.models.vllm_cpu_env import set_vllm_cpu_env
        from app.serve.metrics import EngineMetrics

        self.cfg = cfg = ServeConfig.model_validate(config)
        set_vllm_cpu_env(cfg.vllm.cpu_kvcache_gib, cfg.vllm.cpu_omp_threads_bind)
        from vllm import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        home = rayalign_home()
        model_dir = vllm_model_dir(resolve_model(cfg.model).path, home / "serve" / "vllm-views")
        args = AsyncEngineArgs(
            model=str(model_dir), dtype=cfg.vllm.dtype, max_model_len=cfg.limits.max_model_len,
            enable_lora=True, max_loras=cfg.vllm.max_loras, max_cpu_loras=max(cfg.vllm.max_cpu_loras, cfg.vllm.max_loras),
            max_lora_rank=cfg.vllm.max_lora_rank, max_num_seqs=cfg.vllm.max_num_seqs, enforce_eager=cfg.vllm.enforce_eager,
            seed=0,
        )
        self._init_state(cfg, AsyncLLM.from_engine_args(args), EngineMetrics("vllm"))

    def _init_state(self, cfg, engine, metrics) -> None:
        """Everything but the vLLM engine itself (``engine``: an AsyncLLM, or any object with its LoRA/generate API)."""
        from app.config.paths import rayalign_home

        self.cfg, self.engine, self.metrics = cfg, engine, metrics
        self.cache_dir = Path(cfg.adapters.cache_dir or rayalign_home() / "serve" / "adapter-cache")
        self.pool = AdapterPool(max(cfg.vllm.max_cpu_loras, cfg.vllm.max_loras), self._unload)
        self.next_id = 1
        self.cancelled = 0  # requests aborted because their caller left

    async def _unload(self, lora) -> None:
        await self.engine.remove_lora(lora.lora_int_id)
        self.metrics.evicted(len(self.pool.loaded))

    async def _load(self, req: EngineRequest):
        """Fetch, check and ``add_lora`` one adapter version (runs without any lock; see AdapterPool)."""
        from vllm.lora.request import LoRARequest

        label = req.adapter.label
        path = await materialize_async(req.adapter.uri, self.cache_dir, label=label, timeout_s=self.cfg.adapters.download_timeout_s)
        rank = json.loads((path / "adapter_config.json").read_text()).get("r", 0)
        if not isinstance(rank, int) or not 0 < rank <= self.cfg.vllm.max_lora_rank:
            raise BadRequest(f"adapter '{label}' has LoRA rank {rank}; this endpoint accepts 1..{self.cfg.vllm.max_lora_rank}", param="model")
        lora = LoRARequest(req.adapter.key, self.next_id, str(path))
        self.next_id += 1
        t0 = time.perf_counter()
        try:
            await self.engine.add_lora(lora)
        except Exception as exc:  # noqa: BLE001 - a broken adapter folder is the caller's problem, named
            raise NotFound(f"adapter '{label}' could not be loaded: {exc}", param="model") from None
        self.metrics.loaded_adapter(label, time.perf_counter() - t0, len(self.pool.loaded) + 1)
        return lora

    @staticmethod
    def _sampling_params(req: EngineRequest):
        """vLLM SamplingParams for the request; a value vLLM refuses is the caller's 400, naming the field."""
        from vllm import SamplingParams
        from vllm.exceptions import VLLMValidationError
        from vllm.sampling_params import RequestOutputKind

        try:
            return SamplingParams(
                max_tokens=req.max_tokens, temperature=req.temperature, top_p=req.top_p, seed=req.seed,
                stop=req.stop or None, output_kind=RequestOutputKind.DELTA,
            )
        except (ValueError, VLLMValidationError) as exc:
            field = next((f for f in ("stop", "temperature", "top_p", "seed", "max_tokens") if f in str(exc)), None)
            raise BadRequest(f"invalid sampling parameters: {exc}", param=field) from None

    async def stream(self, request: dict) -> AsyncIterator[dict]:
        """Token deltas: ``{"text": delta, "completion_tokens": n, "finish_reason": None | str}``."""
        from vllm.inputs import TokensPrompt

        req = EngineRequest.model_validate(request)
        params = self._sampling_params(req)  # before any adapter is pinned
        key = req.adapter.key if req.adapter else None
        lora = await self.pool.acquire(key, lambda: self._load(req)) if key else None
        rid, n, finished = uuid.uuid4().hex, 0, False
        try:
            async for out in self.engine.generate(TokensPrompt(prompt_token_ids=req.prompt_token_ids), params, rid, lora_request=lora):
                choice = out.outputs[0]
                n += len(choice.token_ids)
                finished = out.finished
                yield {"text": choice.text, "completion_tokens": n, "finish_reason": choice.finish_reason if out.finished else None}
        except ServeError:
            raise
        except Exception as exc:  # noqa: BLE001 - engine-side failure: 503, the request itself was valid
            raise EngineUnavailable(f"vLLM engine failed: {type(exc).__name__}") from None
        finally:
            if key:
                self.pool.release(key)
            if not finished:  # the caller left (or the engine failed): free the sequence's slot now
                self.cancelled += 1
                try:
                    await self.engine.abort(rid)
                except Exception:  # noqa: BLE001 - already finished or never started: nothing to free
                    pass

    async def generate(self, request: dict) -> dict:
        """One completion: ``{"text", "completion_tokens", "finish_reason"}``."""
        text, n, finish = [], 0, "length"
        async for chunk in self.stream(request):
            text.append(chunk["text"])
            n, finish = chunk["completion_tokens"], chunk["finish_reason"] or finish
        return {"text": "".join(text), "completion_tokens": n, "finish_reason": finish}

    async def check_health(self) -> None:
        """Serve health check: the engine core process must be alive."""
        if self.engine.errored:
            raise RuntimeError("vLLM engine core is dead")
        await self.engine.check_health()

    async def stats(self) -> dict:
        return {"engine": "vllm", "resident": self.pool.resident(), "pinned": dict(self.pool.pins),
                "evictions": self.pool.evictions, "cancelled": self.cancelled, **replica_memory()}

    def __del__(self):
        engine = getattr(self, "engine", None)
        if engine is not None:
            engine.shutdown()
