"""HF/peft fallback engine: Serve model multiplexing (per-replica LRU that really unloads) + mixed-adapter batches.

Every adapter is a named peft LoRA on one shared base; a batch may mix adapters (peft ``adapter_names``, one row per
request, ``__base__`` for the plain base). Ray Serve's ``@serve.batch`` splits batches by multiplexed model id, which
would serialize adapters, so requests are gathered by the small ``MixedBatcher`` below instead.

Unknown adapters never cost a good one: the adapter folder is validated before the multiplexer (which evicts first,
then loads) is asked for it. All model work (load, delete, generate) runs on one thread, so weights never change
under a running generate.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import AsyncIterator, Callable

from app.serve.adapter_store import materialize_async
from app.serve.admission import FairQueue
from app.serve.errors import EngineUnavailable, NotFound, ServeError
from app.serve.metrics import replica_memory
from app.serve.protocol import EngineRequest, truncate_at_stop

log = logging.getLogger(__name__)
NULL_ADAPTER = "rayalign_null"  # zero LoRA that makes the model a PeftModel before any real adapter arrives
BASE = "__base__"  # peft's name for "no adapter" rows in a mixed batch


class MixedBatcher:
    """Gathers concurrent requests (any adapters, streamed or not) and runs them as one batch on ``executor``.

    Requests wait in a per-tenant ``FairQueue``: a batch takes up to ``max_size`` of them round-robin over tenants, so
    a tenant with many queued requests never puts another tenant's behind all of its own. A batch starts once
    ``max_size`` are queued or the oldest queued request has waited ``wait_s`` (requests that queued while the model
    thread was busy have waited already and start at once).

    ``run_batch(items, gone, sinks) -> list[result | Exception]`` is synchronous; the i-th event in ``gone`` is set
    when the i-th caller went away (its row may stop generating); ``sinks[i]`` (or None) receives a streamed row's
    tokens.
    """

    def __init__(self, run_batch: Callable[..., list], executor: ThreadPoolExecutor, max_size: int, wait_s: float):
        self.run_batch, self.executor, self.max_size, self.wait_s = run_batch, executor, max_size, wait_s
        self.pending = FairQueue()
        self.wakeup: asyncio.Event | None = None
        self.task: asyncio.Task | None = None

    async def submit(self, item, tenant: str | None = None, sink: "_RowSink | None" = None):
        loop = asyncio.get_running_loop()
        if self.task is None or self.task.done():  # (re)started on the running loop, with an event bound to it
            self.pending, self.wakeup = FairQueue(), asyncio.Event()
            self.task = loop.create_task(self._loop())
        fut = loop.create_future()
        gone = threading.Event()
        fut.add_done_callback(lambda f: f.cancelled() and gone.set())
        self.pending.put(tenant or "", (item, fut, gone, sink, loop.time()))
        self.wakeup.set()
        return await fut

    async def _next_batch(self) -> list:
        loop = asyncio.get_running_loop()
        while True:
            while not self.pending.size:
                self.wakeup.clear()
                await self.wakeup.wait()
            while self.pending.size < self.max_size:
                remaining = min(entry[4] for entry in self.pending.heads()) + self.wait_s - loop.time()
                if remaining <= 0:
                    break
                self.wakeup.clear()
                try:
                    await asyncio.wait_for(self.wakeup.wait(), remaining)
                except asyncio.TimeoutError:
                    break
            batch = [entry for entry in self.pending.take(self.max_size) if not entry[1].done()]  # callers still here
            if batch:
                return batch

    async def _loop(self):
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._next_batch()
            try:
                results = await loop.run_in_executor(
                    self.executor, self.run_batch, [e[0] for e in batch], [e[2] for e in batch], [e[3] for e in batch]
                )
            except Exception as exc:  # noqa: BLE001 - run_batch isolates requests; this is the model thread itself failing
                results = [EngineUnavailable(f"generation failed: {type(exc).__name__}")] * len(batch)
            for (_, fut, *_), result in zip(batch, results):
                if fut.done():
                    continue
                if isinstance(result, Exception):
                    fut.set_exception(result)
                else:
                    fut.set_result(result)


class _RowSink:
    """Where one streamed row's new tokens go: its consumer's asyncio queue (filled from the model thread)."""

    def __init__(self, max_tokens: int, eos: int | None):
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue = asyncio.Queue()
        self.max_tokens, self.eos = max_tokens, eos
        self.sent = 0  # tokens handed to the consumer
        self.closed = False  # eos or max_tokens reached: later tokens of this row are padding
        self.halt = threading.Event()  # the consumer hit a stop string: the row need not generate further

    def take(self, token: int) -> bool:
        """Count ``token`` in (model thread); False once the row has ended."""
        if self.closed:
            return False
        self.sent += 1
        self.closed = token == self.eos or self.sent >= self.max_tokens
        return True


class _BatchStreamer:
    """A transformers streamer for a batch: each step's token of every streamed row goes to its sink, one wake-up of
    the event loop per step for all rows (generate() first hands over the prompt, which is skipped)."""

    def __init__(self, sinks: list[_RowSink | None]):
        self.sinks, self.skipped_prompt = sinks, False
        self.loop = next(s.loop for s in sinks if s is not None)

    def put(self, value):
        if not self.skipped_prompt:
            self.skipped_prompt = True
            return
        step = [(sink.queue, [token]) for sink, token in zip(self.sinks, value.reshape(-1).tolist())
                if sink is not None and sink.take(token)]
        if step:
            self.loop.call_soon_threadsafe(_deliver, step)

    def end(self):
        pass  # every stream's end marker is its request's future completing (MixedBatcher)


def _deliver(step: list) -> None:
    for queue, tokens in step:
        queue.put_nowait(tokens)


class _RowsStop:
    """A transformers StoppingCriteria: row i stops once its caller left, its stream hit a stop string, or it has
    generated its own ``max_tokens`` (a batch runs to the largest)."""

    def __init__(self, width: int, max_tokens: list[int], flags: list[list[threading.Event]]):
        self.width, self.max_tokens, self.flags = width, max_tokens, flags

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        made = input_ids.shape[1] - self.width
        return torch.tensor([made >= m or any(f.is_set() for f in fl) for m, fl in zip(self.max_tokens, self.flags)],
                            dtype=torch.bool, device=input_ids.device)


class _LoadedAdapter:
    """What the Serve multiplexer caches; its ``__del__`` (called by Serve on LRU eviction) unloads the weights."""

    def __init__(self, engine: "HFEngine", key: str):
        self.engine, self.key, self.alive = engine, key, True

    def __del__(self):
        if self.alive:
            self.alive = False
            self.engine.unload_adapter(self.key)


class HFEngine:
    """A Serve deployment class: base model + peft adapters on CPU, OpenAI semantics handled by the ingress."""

    def __init__(self, config: dict):
        import torch
        from peft import LoraConfig, get_peft_model
        from ray import serve

        from app.config.serve import ServeConfig
        from app.config.paths import rayalign_home
        from app.models.loader import load_model, load_tokenizer, resolve_model
        from app.serve.metrics import EngineMetrics

        self.cfg = ServeConfig.model_validate(config)
        torch.set_num_threads(self.cfg.hf.num_threads or max(1, int(self.cfg.engine_deployment.num_cpus)))
        resolved = resolve_model(self.cfg.model)
        self.tokenizer = load_tokenizer(resolved)
        base = load_model(resolved, self.cfg.model.dtype)
        null = LoraConfig(r=1, lora_alpha=1, target_modules=["q_proj"], init_lora_weights=True)  # B = 0: exact base
        self.model = get_peft_model(base, null, adapter_name=NULL_ADAPTER)
        self.model.eval()
        self.cache_dir = Path(self.cfg.adapters.cache_dir or rayalign_home() / "serve" / "adapter-cache")
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hf-engine")
        self.paths: dict[str, Path] = {}
        self.labels: dict[str, str] = {}
        self.largest_mix = 0  # most distinct adapters (incl. base) seen in one batch
        self.largest_batch = 0  # most requests (streamed or not) generated together
        self.cancelled = 0  # generations stopped early because their caller went away
        self.cancelled_tokens = 0  # tokens those generations produced before stopping
        self.metrics = EngineMetrics("hf")

        async def load(key: str) -> _LoadedAdapter:  # a plain function: Serve stores its LRU state on it
            return await self._load_adapter(key)

        self.get_adapter = serve.multiplexed(max_num_models_per_replica=self.cfg.hf.max_adapters_per_replica)(load)
        self.batcher = MixedBatcher(self._run_batch, self.executor, self.cfg.hf.max_batch_size, self.cfg.hf.batch_wait_timeout_s)

    # ---- adapters -------------------------------------------------------------------------------------------------
    async def _load_adapter(self, key: str) -> _LoadedAdapter:
        t0 = time.perf_counter()
        await asyncio.get_running_loop().run_in_executor(self.executor, self._load_sync, key)
        self.metrics.loaded_adapter(self.labels.get(key, key), time.perf_counter() - t0, len(self.resident()))
        return _LoadedAdapter(self, key)

    def _load_sync(self, key: str) -> None:
        if key not in self.model.peft_config:
            self.model.load_adapter(str(self.paths[key]), adapter_name=key)
        self.model.eval()

    def unload_adapter(self, key: str) -> None:
        """Free an adapter's weights (runs on the model thread so it never races a generate)."""

        def _delete():
            if key in self.model.peft_config:
                self.model.delete_adapter(key)
                self.model.set_adapter(NULL_ADAPTER)

        self.executor.submit(_delete).result()
        self.metrics.evicted(len(self.resident()))

    def resident(self) -> list[str]:
        """Adapter keys whose weights are loaded on this replica (excludes the null adapter)."""
        return sorted(k for k in self.model.peft_config if k != NULL_ADAPTER)

    async def _prepare(self, request: dict) -> EngineRequest:
        req = EngineRequest.model_validate(request)
        if req.adapter is not None:
            key = req.adapter.key
            if key not in self.paths:  # a key names one adapter version: fetch and check it once per replica
                path = await materialize_async(
                    req.adapter.uri, self.cache_dir, label=req.adapter.label, timeout_s=self.cfg.adapters.download_timeout_s
                )
                rank = json.loads((path / "adapter_config.json").read_text()).get("r", 0)
                if not isinstance(rank, int) or rank <= 0:
                    raise NotFound(f"adapter '{req.adapter.label}' has an invalid adapter_config.json", param="model")
                self.paths[key], self.labels[key] = path, req.adapter.label
            await self.get_adapter(key)  # validated above, so an eviction here always admits a good one
        return req

    # ---- generation -----------------------------------------------------------------------------------------------
    def _run_batch(self, reqs: list[EngineRequest], gone: list[threading.Event] | None = None,
                   sinks: list[_RowSink | None] | None = None) -> list:
        """Generate for a mixed-adapter batch; one result or exception per request, never one failure for all.

        Rows are grouped by sampling settings (temperature, top_p, seed); a group that fails is retried row by row,
        so a poisoned request fails alone (a streamed row that already sent tokens fails instead of starting over).
        ``gone[i]`` set: request i's caller left, its row stops generating; ``sinks[i]``: request i is streamed.
        """
        gone = gone or [threading.Event() for _ in reqs]
        sinks = sinks or [None] * len(reqs)
        results: list = [None] * len(reqs)
        for i, r in enumerate(reqs):  # an adapter evicted while its request queued is reloaded (and swept again below)
            if r.adapter is not None and r.adapter.key not in self.model.peft_config:
                try:
                    self._load_sync(r.adapter.key)
                except Exception as exc:  # noqa: BLE001 - this request's adapter, not its neighbours'
                    results[i] = self._failure(exc)
        live = [i for i in range(len(reqs)) if results[i] is None]
        self.largest_mix = max(self.largest_mix, len({self._name(reqs[i]) for i in live} or {BASE}))
        self.largest_batch = max(self.largest_batch, len(reqs))
        groups: dict[tuple, list[int]] = {}
        for i in live:
            r = reqs[i]
            groups.setdefault((r.temperature, r.top_p, r.seed), []).append(i)
        try:
            for idx in groups.values():
                try:
                    outs = self._generate_rows([reqs[i] for i in idx], [gone[i] for i in idx], [sinks[i] for i in idx])
                except Exception as exc:  # noqa: BLE001 - find the poisoned row: alone, each request succeeds or fails itself
                    outs = []
                    for i in idx:
                        if sinks[i] is not None and sinks[i].sent:
                            outs.append(self._failure(exc))
                            continue
                        try:
                            outs += self._generate_rows([reqs[i]], [gone[i]], [sinks[i]])
                        except Exception as row_exc:  # noqa: BLE001
                            outs.append(self._failure(row_exc))
                for i, out in zip(idx, outs):
                    results[i] = out
        finally:
            self._sweep()
        return results

    @staticmethod
    def _name(r: EngineRequest) -> str:
        return r.adapter.key if r.adapter else BASE

    @staticmethod
    def _failure(exc: Exception) -> ServeError:
        if isinstance(exc, ServeError):
            return exc
        log.warning("generation failed: %s", exc, exc_info=exc)
        return EngineUnavailable(f"generation failed: {type(exc).__name__}")

    def _generate_rows(self, rows: list[EngineRequest], gone: list[threading.Event], sinks: list[_RowSink | None]) -> list[dict]:
        """One ``generate`` call for rows sharing sampling settings: left-padded [B, T] ids, one adapter name per row."""
        import torch

        r0 = rows[0]
        width = max(len(r.prompt_token_ids) for r in rows)
        pad = self.tokenizer.pad_token_id
        ids = torch.tensor([[pad] * (width - len(r.prompt_token_ids)) + r.prompt_token_ids for r in rows])
        mask = torch.tensor([[0] * (width - len(r.prompt_token_ids)) + [1] * len(r.prompt_token_ids) for r in rows])
        if r0.seed is not None:
            torch.manual_seed(r0.seed)
        sampling = dict(do_sample=True, temperature=r0.temperature, top_p=r0.top_p) if r0.temperature > 0 else dict(do_sample=False)
        stop = _RowsStop(width, [r.max_tokens for r in rows], [[g] + ([s.halt] if s else []) for g, s in zip(gone, sinks)])
        streamer = _BatchStreamer(sinks) if any(s is not None for s in sinks) else None
        with torch.no_grad():
            out = self.model.generate(
                input_ids=ids, attention_mask=mask, max_new_tokens=max(r.max_tokens for r in rows),
                adapter_names=[self._name(r) for r in rows], pad_token_id=pad, eos_token_id=self.tokenizer.eos_token_id,
                stopping_criteria=[stop], streamer=streamer, **sampling,
            )
        results = []
        for row, (r, left) in enumerate(zip(rows, gone)):
            new_ids = out[row, width:].tolist()[: r.max_tokens]
            if left.is_set():  # its row stopped early; generate() padded the rest
                self.cancelled += 1
                while new_ids and new_ids[-1] == pad:
                    new_ids.pop()
                self.cancelled_tokens += len(new_ids)
            results.append(self._finish(new_ids, r))
        return results

    def _finish(self, new_ids: list[int], r: EngineRequest) -> dict:
        eos = self.tokenizer.eos_token_id
        hit_eos = eos in new_ids
        if hit_eos:
            new_ids = new_ids[: new_ids.index(eos)]
        text, hit_stop = truncate_at_stop(self.tokenizer.decode(new_ids, skip_special_tokens=True), r.stop)
        finish = "stop" if hit_eos or hit_stop else "length"
        return {"text": text, "completion_tokens": len(new_ids) + int(hit_eos), "finish_reason": finish}

    def _sweep(self) -> None:
        """Drop adapters the multiplexer no longer tracks (reloaded for a queued request after eviction)."""
        wrapper = getattr(self.get_adapter, "__serve_multiplex_wrapper", None)
        tracked = set(wrapper.models) if wrapper is not None else set(self.resident())
        for key in self.resident():
            if key not in tracked:
                self.model.delete_adapter(key)
                self.model.set_adapter(NULL_ADAPTER)

    async def generate(self, request: dict) -> dict:
        """One completion: ``{"text", "completion_tokens", "finish_reason"}``."""
        req = await self._prepare(request)
        return await self.batcher.submit(req, req.tenant)

    async def stream(self, request: dict) -> AsyncIterator[dict]:
        """Token-by-token deltas: ``{"text": delta, "completion_tokens": n, "finish_reason": None | str}``.

        The request is a row of a batch like any other (streamed and plain requests of all tenants generate
        together). Its stream ends when its row ends (eos, max_tokens, a stop string), not when the batch does; its
        request finishing (a failure included: a poisoned seed ends the stream with EngineUnavailable) queues the end
        marker; a caller that leaves stops its row.
        """
        req = await self._prepare(request)
        sink = _RowSink(req.max_tokens, self.tokenizer.eos_token_id)
        queue = sink.queue
        job = asyncio.ensure_future(self.batcher.submit(req, req.tenant, sink))
        job.add_done_callback(lambda _: queue.put_nowait(None))  # after every token the model thread queued
        job.add_done_callback(lambda f: f.cancelled() or f.exception())  # retrieved even if the stream ended first
        ids: list[int] = []
        sent = ""
        eos = self.tokenizer.eos_token_id
        finish, hit_eos, done = "length", False, False
        loop, last = asyncio.get_running_loop(), float("-inf")  # when the last chunk went out
        try:
            ended = False
            while True:
                # every token queued since the last chunk goes out as one chunk (a slow reader gets fewer, larger
                # messages); after the first chunk, at most one chunk per stream_interval_s (the tokens made meanwhile
                # join it): each chunk costs a hop engine -> ingress -> proxy, whatever its size
                items = [await queue.get()]
                pause = last + self.cfg.hf.stream_interval_s - loop.time()
                if pause > 0 and items[0] is not None and eos not in items[0]:
                    await asyncio.sleep(pause)
                if sent or pause > 0:  # the first chunk is the first token alone: time to first token is unchanged
                    while not queue.empty():
                        items.append(queue.get_nowait())
                for item in items:
                    if item is None:
                        ended = True
                        break
                    if eos in item:
                        ids.extend(item[: item.index(eos)])
                        finish, hit_eos = "stop", True
                        break
                    ids.extend(item)
                text, hit = truncate_at_stop(self.tokenizer.decode(ids, skip_special_tokens=True), req.stop)
                if hit:
                    finish = "stop"
                    sink.halt.set()  # a stop string ended it: the rest need not be generated
                if ended or finish == "stop" or len(ids) >= req.max_tokens:
                    break  # the last text goes out with the final chunk (one message, not two)
                if text.endswith("\ufffd"):  # an unfinished multi-byte character
                    continue
                if len(text) > len(sent):
                    yield {"text": text[len(sent):], "completion_tokens": len(ids), "finish_reason": None}
                    sent, last = text, loop.time()
            if ended:  # the request finished before its row showed an end: a failure surfaces here
                try:
                    await job
                except ServeError:
                    raise
                except Exception as exc:  # noqa: BLE001 - a failed generate is the engine's failure, not the user's
                    raise self._failure(exc) from None
            done = True
            text, _ = truncate_at_stop(self.tokenizer.decode(ids, skip_special_tokens=True), req.stop)
            yield {"text": text[len(sent):], "completion_tokens": len(ids) + int(hit_eos), "finish_reason": finish}
        finally:
            if not done:  # the caller left (cancelled / closed) or the generation failed: stop generating for nobody
                job.cancel()

    async def check_health(self) -> None:
        """Serve health check: the model thread must be alive and responsive."""
        if self.executor._shutdown:  # noqa: SLF001 - the executor is ours
            raise RuntimeError("model thread is gone")

    async def stats(self) -> dict:
        """Resident adapters on this replica (for tests and debugging)."""
        return {"engine": "hf", "resident": self.resident(), "largest_mix": self.largest_mix, "largest_batch": self.largest_batch,
                "cancelled": self.cancelled, "cancelled_tokens": self.cancelled_tokens, **replica_memory()}
