"""vLLM engine: one AsyncLLM with ``enable_lora``; requests for different adapters share every batch.

vLLM keeps up to ``max_loras`` adapters active per batch and ``max_cpu_loras`` loaded; this deployment keeps its own
LRU of adapter versions over the same budget and calls ``remove_lora`` on eviction (so an old version of a promoted
adapter is really dropped), and measures adapter load time with an explicit ``add_lora``.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import OrderedDict
from pathlib import Path
from typing import AsyncIterator

from app.models.vllm_cpu_env import vllm_model_dir
from app.serve.adapter_store import materialize
from app.serve.errors import BadRequest, EngineUnavailable, NotFound
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
        self.engine = AsyncLLM.from_engine_args(args)
        self.cache_dir = Path(cfg.adapters.cache_dir or home / "serve" / "adapter-cache")
        self.loras: OrderedDict[str, object] = OrderedDict()  # key -> LoRARequest, LRU order
        self.inflight: dict[str, int] = {}
        self.next_id = 1
        self.lock = asyncio.Lock()
        self.metrics = EngineMetrics("vllm")

    async def _lora(self, req: EngineRequest):
        """The LoRARequest for the request's adapter, loading it (and evicting the LRU idle one) when new."""
        if req.adapter is None:
            return None
        from vllm.lora.request import LoRARequest

        key = req.adapter.key
        async with self.lock:  # pinned (inflight) under the lock, so an eviction never hits a running adapter
            if key in self.loras:
                self.loras.move_to_end(key)
                self.inflight[key] = self.inflight.get(key, 0) + 1
                return self.loras[key]
            path = await asyncio.get_running_loop().run_in_executor(None, materialize, req.adapter.uri, self.cache_dir)
            rank = json.loads((path / "adapter_config.json").read_text()).get("r", 0)
            if not isinstance(rank, int) or not 0 < rank <= self.cfg.vllm.max_lora_rank:
                raise BadRequest(
                    f"adapter '{req.adapter.label}' has LoRA rank {rank}; this endpoint accepts 1..{self.cfg.vllm.max_lora_rank}",
                    param="model",
                )
            idle = [k for k in self.loras if not self.inflight.get(k)]
            if len(self.loras) >= self.cfg.vllm.max_cpu_loras and idle:
                old = self.loras.pop(idle[0])
                await self.engine.remove_lora(old.lora_int_id)
                self.metrics.evicted(len(self.loras))
            lora = LoRARequest(key, self.next_id, str(path))
            self.next_id += 1
            t0 = time.perf_counter()
            try:
                await self.engine.add_lora(lora)
            except Exception as exc:  # noqa: BLE001 - a broken adapter folder is the caller's problem, named
                raise NotFound(f"adapter '{req.adapter.label}' could not be loaded: {exc}", param="model") from None
            self.loras[key] = lora
            self.inflight[key] = self.inflight.get(key, 0) + 1
            self.metrics.loaded_adapter(req.adapter.label, time.perf_counter() - t0, len(self.loras))
            return lora

    async def stream(self, request: dict) -> AsyncIterator[dict]:
        """Token deltas: ``{"text": delta, "completion_tokens": n, "finish_reason": None | str}``."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt
        from vllm.sampling_params import RequestOutputKind

        req = EngineRequest.model_validate(request)
        lora = await self._lora(req)
        key = req.adapter.key if req.adapter else None
        params = SamplingParams(
            max_tokens=req.max_tokens, temperature=req.temperature, top_p=req.top_p, seed=req.seed,
            stop=req.stop or None, output_kind=RequestOutputKind.DELTA,
        )
        n = 0
        try:
            async for out in self.engine.generate(
                TokensPrompt(prompt_token_ids=req.prompt_token_ids), params, uuid.uuid4().hex, lora_request=lora
            ):
                choice = out.outputs[0]
                n += len(choice.token_ids)
                yield {"text": choice.text, "completion_tokens": n, "finish_reason": choice.finish_reason if out.finished else None}
        except (BadRequest, NotFound):
            raise
        except Exception as exc:  # noqa: BLE001 - engine-side failure: 503, the request itself was valid
            raise EngineUnavailable(f"vLLM engine failed: {type(exc).__name__}: {exc}") from None
        finally:
            if key:
                self.inflight[key] -= 1

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
        return {"engine": "vllm", "resident": list(self.loras)}

    def __del__(self):
        engine = getattr(self, "engine", None)
        if engine is not None:
            engine.shutdown()
