"""Per-replica LRU of loaded adapters with pin counts, for engines that load adapters explicitly (vLLM).

``acquire`` pins an adapter for one request (loading it first when new), ``release`` unpins it; callers release in a
``finally``, so a request that fails anywhere never leaves its adapter pinned (un-evictable) for good. No lock is held
across a load or an unload: loads of different adapters run concurrently, concurrent requests for one adapter share
its single load, and requests for loaded adapters never wait behind a slow download.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any


class AdapterPool:
    """Up to ``capacity`` loaded adapters; the least recently used idle one is unloaded to make room."""

    def __init__(self, capacity: int, unload: Callable[[Any], Awaitable[None]]):
        self.capacity = capacity
        self.unload = unload
        self.loaded: OrderedDict[str, Any] = OrderedDict()  # key -> engine handle (e.g. LoRARequest), LRU order
        self.pins: dict[str, int] = {}
        self.loading: dict[str, asyncio.Future] = {}
        self.evictions = 0

    async def acquire(self, key: str, load: Callable[[], Awaitable[Any]]) -> Any:
        """The handle for ``key``, pinned; ``load()`` runs at most once per key at a time. Pair with ``release``."""
        while key not in self.loaded:
            pending = self.loading.get(key)
            if pending is not None:
                await asyncio.shield(pending)  # someone else's load: wait for it (its failure is ours too)
                continue
            pending = self.loading[key] = asyncio.get_running_loop().create_future()
            try:
                await self._make_room()
                handle = await load()
            except BaseException as exc:
                pending.set_exception(exc if isinstance(exc, Exception) else RuntimeError("adapter load cancelled"))
                pending.exception()  # retrieved: waiters re-raise it, nobody else needs to
                raise
            finally:
                del self.loading[key]
            self.loaded[key] = handle
            pending.set_result(handle)
        self.loaded.move_to_end(key)
        self.pins[key] = self.pins.get(key, 0) + 1
        return self.loaded[key]

    def release(self, key: str) -> None:
        """Unpin one use of ``key`` (idempotence is the caller's: call exactly once per acquire, from a finally)."""
        self.pins[key] -= 1
        if not self.pins[key]:
            del self.pins[key]

    async def _make_room(self) -> None:
        while len(self.loaded) + len(self.loading) > self.capacity:
            idle = next((k for k in self.loaded if not self.pins.get(k)), None)
            if idle is None:  # everything is pinned by running requests: exceed briefly rather than fail
                return
            handle = self.loaded.pop(idle)  # gone from the table first: nobody can pin it while it unloads
            self.evictions += 1
            await self.unload(handle)

    def resident(self) -> list[str]:
        return list(self.loaded)
