"""Engines isolate failures per request, always end streams, stop work for callers that left, and never leak an
adapter pin (issue 20). The HF engine runs in-process on the tiny model; the vLLM engine's bookkeeping runs against a
small stand-in for vLLM's AsyncLLM (its LoRA/generate/abort API), so no vLLM engine has to start."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from app.serve.errors import BadRequest, EngineUnavailable
from app.serve.protocol import AdapterTarget, EngineRequest

POISON_SEED = 2**70  # torch.manual_seed overflows: what an unbounded `seed` used to hand the engine


@pytest.fixture(scope="module")
def hf_engine(rayalign_home):
    from app.config.loader import load_config
    from app.config.serve import ServeConfig
    from app.serve.engine_hf import HFEngine

    cfg = load_config(None, ServeConfig, ["model.source=tiny:llama", "engine=hf", "limits.max_model_len=512",
                                          "limits.max_tokens=400", "hf.max_batch_size=8", "hf.batch_wait_timeout_s=0.2"])
    return HFEngine(cfg.model_dump(mode="json"))


def request(engine, text: str, **kw) -> dict:
    ids = engine.tokenizer(text, add_special_tokens=False)["input_ids"]
    return EngineRequest(prompt_token_ids=ids, **{"max_tokens": 8, "temperature": 0.0, **kw}).model_dump()


def test_poisoned_request_in_a_concurrent_batch_fails_only_itself(hf_engine):
    async def batch():
        reqs = [request(hf_engine, f"count {i}") for i in range(7)] + [request(hf_engine, "x", temperature=1.0, seed=POISON_SEED)]
        return await asyncio.gather(*(hf_engine.generate(r) for r in reqs), return_exceptions=True)

    results = asyncio.run(batch())
    assert all(isinstance(r, dict) and r["completion_tokens"] > 0 for r in results[:7]), results
    assert isinstance(results[7], EngineUnavailable), results[7]


def test_poisoned_request_streamed_ends_with_an_error(hf_engine):
    async def consume():
        return [c async for c in hf_engine.stream(request(hf_engine, "x", temperature=1.0, seed=POISON_SEED))]

    async def bounded():
        return await asyncio.wait_for(consume(), 20)

    with pytest.raises(EngineUnavailable, match="generation failed"):
        asyncio.run(bounded())


def test_caller_leaving_a_stream_stops_its_generation(hf_engine):
    before, tokens_before = getattr(hf_engine, "cancelled", 0), getattr(hf_engine, "cancelled_tokens", 0)

    async def leave_after_first_chunk():
        gen = hf_engine.stream(request(hf_engine, "count", max_tokens=400, temperature=1.0, seed=3))
        await gen.__anext__()
        await gen.aclose()
        await asyncio.get_running_loop().run_in_executor(hf_engine.executor, lambda: None)  # model thread idle

    t0 = time.perf_counter()
    asyncio.run(leave_after_first_chunk())
    assert hf_engine.cancelled == before + 1
    stopped_after = hf_engine.cancelled_tokens - tokens_before
    assert stopped_after < 200, stopped_after  # 400 were asked for
    print(f"stream closed after 1 chunk: generation stopped after {stopped_after} tokens "
          f"({time.perf_counter() - t0:.2f}s)")


def test_caller_leaving_a_batched_request_stops_its_row(hf_engine):
    before, tokens_before = hf_engine.cancelled, hf_engine.cancelled_tokens

    async def leave():
        keep = asyncio.ensure_future(hf_engine.generate(request(hf_engine, "stay", max_tokens=300, temperature=1.0, seed=5)))
        gone = asyncio.ensure_future(hf_engine.generate(request(hf_engine, "go", max_tokens=300, temperature=1.0, seed=5)))
        await asyncio.sleep(0.25)  # both are in one batch (wait 0.2 s), generating
        gone.cancel()
        return await keep

    out = asyncio.run(leave())
    assert out["completion_tokens"] == 300 and hf_engine.cancelled == before + 1
    assert hf_engine.cancelled_tokens - tokens_before < 300  # the row stopped; its neighbour ran on


def test_streams_are_rows_of_one_batch_and_get_their_own_tokens(hf_engine):
    """4 streams and the same 4 prompts unstreamed, concurrently: one batch of 8 (the batch window is 0.2 s), and
    each stream's text is exactly its own prompt's completion (no row's tokens reach another stream)."""
    prompts = ["one two three", "the sea is", "water long little", "how many apples"]

    async def both():
        async def text_of(req):
            return "".join([c["text"] async for c in hf_engine.stream(req)])

        streams = [text_of(request(hf_engine, p, max_tokens=12, tenant=f"t{i % 2}")) for i, p in enumerate(prompts)]
        plain = [hf_engine.generate(request(hf_engine, p, max_tokens=12)) for p in prompts]
        return await asyncio.gather(*streams, *plain)

    before = hf_engine.largest_batch
    hf_engine.largest_batch = 0
    out = asyncio.run(both())
    streamed, plain = out[:4], [r["text"] for r in out[4:]]
    assert hf_engine.largest_batch == 8, hf_engine.largest_batch
    hf_engine.largest_batch = max(before, 8)
    assert streamed == plain and len(set(plain)) > 1, (streamed, plain)


def test_stream_interval_sends_fewer_chunks_with_the_same_text(hf_engine):
    async def chunks(req):
        return [c async for c in hf_engine.stream(req)]

    default = hf_engine.cfg.hf.stream_interval_s
    try:
        hf_engine.cfg.hf.stream_interval_s = 0.0
        every = asyncio.run(chunks(request(hf_engine, "count", max_tokens=24)))
        hf_engine.cfg.hf.stream_interval_s = 1.0
        spaced = asyncio.run(chunks(request(hf_engine, "count", max_tokens=24)))
    finally:
        hf_engine.cfg.hf.stream_interval_s = default
    assert "".join(c["text"] for c in spaced) == "".join(c["text"] for c in every)
    assert spaced[-1]["completion_tokens"] == every[-1]["completion_tokens"] == 24
    assert all(c["finish_reason"] is None for c in every[:-1]) and every[-1]["finish_reason"] == "length"
    # the first token alone (time to first token unchanged), then everything made within the second: the final chunk
    # carries the last text itself (no empty end message)
    assert len(spaced) == 2 < len(every) and spaced[-1]["text"], (spaced, len(every))


# ---- vLLM engine bookkeeping, without starting vLLM ------------------------------------------------------------------
class _FakeOutput:
    def __init__(self, text, finished):
        self.outputs = [type("C", (), {"text": text, "token_ids": [1], "finish_reason": "length" if finished else None})()]
        self.finished = finished


class StandInLLM:
    """AsyncLLM's surface the engine uses: add_lora / remove_lora / generate / abort (records calls)."""

    def __init__(self):
        self.added, self.removed, self.aborted = [], [], []

    async def add_lora(self, lora):
        self.added.append(lora.lora_name)

    async def remove_lora(self, lora_id):
        self.removed.append(lora_id)

    async def generate(self, prompt, params, request_id, lora_request=None):
        for i in range(params.max_tokens):
            await asyncio.sleep(0)
            yield _FakeOutput("t", i == params.max_tokens - 1)

    async def abort(self, request_id):
        self.aborted.append(request_id)

    def shutdown(self):
        pass


@pytest.fixture()
def vllm_engine(tmp_path, monkeypatch):
    from app.config.loader import load_config
    from app.config.serve import ServeConfig
    from app.serve.engine_vllm import VLLMEngine
    from app.serve.metrics import EngineMetrics

    for name in ("a", "b", "c", "slow"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "adapter_config.json").write_text(json.dumps({"r": 4}))
    cfg = load_config(None, ServeConfig, ["vllm.max_loras=2", "vllm.max_cpu_loras=2", f"adapters.cache_dir={tmp_path}/cache"])
    engine = VLLMEngine.__new__(VLLMEngine)
    engine._init_state(cfg, StandInLLM(), EngineMetrics("vllm"))
    return engine, tmp_path


def vllm_request(root, name: str | None, **kw) -> dict:
    adapter = AdapterTarget(key=name, label=f"acme/{name}", uri=str(root / name)) if name else None
    return EngineRequest(prompt_token_ids=[1, 2, 3], max_tokens=4, adapter=adapter, **kw).model_dump()


async def drain(engine, req):
    return [c async for c in engine.stream(req)]


def test_vllm_bad_stop_is_a_400_and_leaks_no_adapter_pin(vllm_engine):
    engine, root = vllm_engine

    async def scenario():
        await drain(engine, vllm_request(root, "a"))
        with pytest.raises(BadRequest) as err:
            await drain(engine, vllm_request(root, "a", stop=[""]))  # vLLM refuses an empty stop string
        assert err.value.param == "stop"
        await drain(engine, vllm_request(root, "b"))
        await drain(engine, vllm_request(root, "c"))  # capacity 2: 'a' (least recent, idle) must be evictable

    asyncio.run(scenario())
    stats = asyncio.run(engine.stats())
    assert "a" not in stats["resident"] and not stats["pinned"], stats


def test_vllm_caller_leaving_unpins_and_aborts(vllm_engine):
    engine, root = vllm_engine

    async def leave():
        gen = engine.stream(vllm_request(root, "a"))
        await gen.__anext__()
        await gen.aclose()

    asyncio.run(leave())
    stats = asyncio.run(engine.stats())
    assert not stats["pinned"] and stats["cancelled"] == 1 and len(engine.engine.aborted) == 1


def test_vllm_slow_adapter_download_blocks_no_other_request(vllm_engine, monkeypatch):
    """The old engine held one asyncio.Lock across the download; every other adapter request waited behind it."""
    import app.serve.adapter_store as store

    engine, root = vllm_engine
    real = store.materialize

    def slow_materialize(uri, cache_dir, **kw):
        if uri.endswith("slow"):
            time.sleep(1.5)
        return real(uri, cache_dir, **kw)

    monkeypatch.setattr(store, "materialize", slow_materialize)

    async def scenario():
        slow = asyncio.ensure_future(drain(engine, vllm_request(root, "slow")))
        await asyncio.sleep(0.1)
        t0 = time.perf_counter()
        await drain(engine, vllm_request(root, "a"))
        await drain(engine, vllm_request(root, None))
        fast = time.perf_counter() - t0
        await slow
        return fast

    assert asyncio.run(scenario()) < 1.0


def test_vllm_concurrent_requests_for_a_new_adapter_load_it_once(vllm_engine):
    engine, root = vllm_engine

    async def many():
        await asyncio.gather(*(drain(engine, vllm_request(root, "b")) for _ in range(6)))

    asyncio.run(many())
    assert engine.engine.added == ["b"] and not asyncio.run(engine.stats())["pinned"]
