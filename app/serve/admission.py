"""Per-tenant admission and fairness: a tenant over its concurrency cap or its request rate gets 429 at the ingress
(before any engine work); at the engine, requests are taken round-robin per tenant, so one tenant's queue never delays
another's turn.

A tenant's 429 carries ``Retry-After`` (whole seconds: when a token is due, at least 1) and ``retry-after-ms``: that
wait (at least 0.5 s) plus a random 0-1 s, so that clients refused together (the openai client sleeps exactly ``retry-after-ms``)
do not all come back in the same instant — in lockstep, each second's burst of refusals queued a neighbour's request
behind it in the proxy and the ingress (measured in docs/serving.md).

The concurrency cap bounds how many of a tenant's requests run at once; the rate (a token bucket, requests/s with a
burst) bounds how many it starts per second — with short requests a tenant at its cap still gets many requests
through, and their CPU is what its neighbours wait for. Both are counted per ingress replica (in-process, no
round-trip): with N ingress replicas a tenant may get N × either. The engine's bounded queue (``max_queued_requests``)
is the global back-stop.
"""

from __future__ import annotations

import math
import random
import time
from collections import deque
from typing import Callable

from app.serve.errors import TooManyRequests


class TokenBucket:
    """``rate`` tokens per second up to ``burst``; a request takes one. Starts full."""

    def __init__(self, rate: float, burst: int, now: float):
        self.rate, self.burst, self.tokens, self.at = rate, burst, float(burst), now

    def available(self, now: float) -> float:
        self.tokens, self.at = min(self.burst, self.tokens + (now - self.at) * self.rate), now
        return self.tokens

    def wait_s(self, now: float) -> float:
        """Seconds until one token is available (0 if one is now)."""
        return max(0.0, (1.0 - self.available(now)) / self.rate)


class TenantGate:
    """Per tenant: in-flight requests against ``caps`` (tenant → max concurrent) and started requests against
    ``rates`` (tenant → (requests/s, burst or None)); absent or None: no limit of that kind."""

    def __init__(self, caps: dict[str, int | None], rates: dict[str, tuple[float | None, int | None]] | None = None,
                 clock: Callable[[], float] = time.monotonic, jitter: Callable[[], float] = random.random):
        self.caps = dict(caps)
        self.inflight: dict[str, int] = {}
        self.clock, self.jitter = clock, jitter  # jitter(): uniform in [0, 1), seconds added to retry-after-ms
        now = clock()
        self.buckets = {tenant: TokenBucket(rate, burst or max(1, math.ceil(rate)), now)
                        for tenant, (rate, burst) in (rates or {}).items() if rate is not None}

    def over_cap(self, tenant: str) -> TooManyRequests | None:
        """The 429 a new request of ``tenant`` would get now (None: it would be admitted); takes nothing."""
        cap = self.caps.get(tenant)
        held = self.inflight.get(tenant, 0)
        if cap is not None and held >= cap:
            return self._refusal(TooManyRequests(
                f"tenant '{tenant}' already has {held} requests in flight (its limit is {cap}); retry later",
                code="tenant_concurrency_limit",
            ), 0.0)
        bucket = self.buckets.get(tenant)
        if bucket is not None:
            wait = bucket.wait_s(self.clock())
            if wait > 0:
                return self._refusal(TooManyRequests(
                    f"tenant '{tenant}' is over its rate limit of {bucket.rate:g} requests/s (burst {bucket.burst}); "
                    f"retry in {wait:.2f}s", code="tenant_rate_limit",
                ), wait)
        return None

    def _refusal(self, err: TooManyRequests, wait: float) -> TooManyRequests:
        err.retry_after_s = max(1, math.ceil(wait))
        err.retry_after_ms = round(1000 * (max(wait, 0.5) + self.jitter()))  # mean about the 1 s of Retry-After
        return err

    def admit(self, tenant: str) -> "Ticket":
        """Count one request in (and take one of its rate tokens), or raise TooManyRequests naming the limit; release
        the ticket when done."""
        err = self.over_cap(tenant)
        if err is not None:
            raise err
        if tenant in self.buckets:
            self.buckets[tenant].tokens -= 1
        self.inflight[tenant] = self.inflight.get(tenant, 0) + 1
        return Ticket(self, tenant)


class Ticket:
    """One admitted request; ``release()`` is idempotent (called from a ``finally`` and from stream clean-up)."""

    def __init__(self, gate: TenantGate, tenant: str):
        self.gate, self.tenant, self.open = gate, tenant, True

    def release(self) -> None:
        if self.open:
            self.open = False
            self.gate.inflight[self.tenant] -= 1


class FairQueue:
    """Per-tenant FIFO queues served round-robin, one entry per tenant per turn (the engine's batch order).

    A tenant with many queued requests never puts another tenant's request behind all of them: taking n entries from
    tenants A (10 queued) and B (1 queued) gives A, B, A, A, ... in arrival order within each tenant.
    """

    def __init__(self):
        self.queues: dict[str, deque] = {}
        self.turns: deque[str] = deque()  # tenants with queued entries, in serving order
        self.size = 0

    def put(self, tenant: str, entry) -> None:
        queue = self.queues.get(tenant)
        if queue is None:
            queue = self.queues[tenant] = deque()
            self.turns.append(tenant)
        queue.append(entry)
        self.size += 1

    def take(self, n: int) -> list:
        """Up to ``n`` entries, round-robin over tenants; a tenant served goes to the back of the turn order."""
        out = []
        while len(out) < n and self.turns:
            tenant = self.turns.popleft()
            queue = self.queues[tenant]
            out.append(queue.popleft())
            self.size -= 1
            if queue:
                self.turns.append(tenant)
            else:
                del self.queues[tenant]
        return out

    def heads(self) -> list:
        """The oldest queued entry of every tenant."""
        return [queue[0] for queue in self.queues.values()]
