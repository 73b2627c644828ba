"""The engine's per-tenant fair order (issue 20, noisy neighbour): a tenant with many queued requests never puts
another tenant's request behind all of its own. Pure python: the HF engine's batcher with a stand-in batch runner."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from app.serve.admission import FairQueue
from app.serve.engine_hf import MixedBatcher


def test_fair_queue_serves_tenants_round_robin_in_arrival_order():
    q = FairQueue()
    for i in range(10):
        q.put("a", f"a{i}")
    q.put("b", "b0")
    q.put("b", "b1")
    assert q.take(4) == ["a0", "b0", "a1", "b1"]
    assert q.size == 8 and q.take(100) == [f"a{i}" for i in range(2, 10)] and q.size == 0


def test_batcher_puts_a_late_tenant_into_the_next_batch_not_behind_a_flood():
    """Tenant a queues 12 requests while the model thread is busy, then b queues one: with batches of 4, b's request
    runs in the first batch after the busy one (FIFO would put it in the fourth)."""
    batches: list[list[str]] = []
    release = threading.Event()

    def run_batch(items, gone, sinks):
        if items == ["block"]:
            release.wait(5)
        batches.append(list(items))
        return [f"done {x}" for x in items]

    async def scenario():
        batcher = MixedBatcher(run_batch, ThreadPoolExecutor(max_workers=1), max_size=4, wait_s=0.01)
        blocker = asyncio.ensure_future(batcher.submit("block", "a"))
        await asyncio.sleep(0.05)  # the model thread is busy with "block"
        flood = [asyncio.ensure_future(batcher.submit(f"a{i}", "a")) for i in range(12)]
        await asyncio.sleep(0.01)
        quiet = asyncio.ensure_future(batcher.submit("b0", "b"))
        await asyncio.sleep(0.01)
        release.set()
        t0 = time.perf_counter()
        results = await asyncio.gather(blocker, quiet, *flood)
        return results, time.perf_counter() - t0

    results, _ = asyncio.run(scenario())
    assert results[1] == "done b0"
    assert batches[0] == ["block"]
    assert batches[1] == ["a0", "b0", "a1", "a2"], batches  # FIFO would have been a0..a3
    assert sorted(x for b in batches[2:] for x in b) == sorted(f"a{i}" for i in range(3, 12))


def test_batcher_does_not_wait_to_fill_when_requests_already_waited():
    """Requests that queued while a batch ran start as soon as it ends (no extra fill wait of wait_s)."""
    started: list[float] = []
    release = threading.Event()

    def run_batch(items, gone, sinks):
        if items == ["block"]:
            release.wait(5)
        started.append(time.perf_counter())
        return items

    async def scenario():
        batcher = MixedBatcher(run_batch, ThreadPoolExecutor(max_workers=1), max_size=8, wait_s=0.3)
        blocker = asyncio.ensure_future(batcher.submit("block"))
        await asyncio.sleep(0.35)  # the first batch waited its 0.3 s to fill, then runs
        later = asyncio.ensure_future(batcher.submit("x"))
        await asyncio.sleep(0.4)  # x has waited longer than wait_s while the model thread was busy
        t_release = time.perf_counter()
        release.set()
        await asyncio.gather(blocker, later)
        return t_release

    t_release = asyncio.run(scenario())
    assert started[-1] - t_release < 0.15, started[-1] - t_release
