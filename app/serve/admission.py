"""Per-tenant admission and fairness: a tenant over its concurrency cap gets 429 at the ingress (before any engine
work); at the engine, requests are taken round-robin per tenant, so one tenant's queue never delays another's turn.

The count is per ingress replica (an in-process counter, no round-trip): with N ingress replicas a tenant may hold up
to N × its cap in flight. The engine's bounded queue (``max_queued_requests``) is the global back-stop.
"""

from __future__ import annotations

from collections import deque

from app.serve.errors import TooManyRequests


class TenantGate:
    """In-flight requests per tenant against ``caps`` (tenant → max concurrent; absent or None: uncapped)."""

    def __init__(self, caps: dict[str, int | None]):
        self.caps = dict(caps)
        self.inflight: dict[str, int] = {}

    def over_cap(self, tenant: str) -> TooManyRequests | None:
        """The 429 a new request of ``tenant`` would get now (None: it would be admitted)."""
        cap = self.caps.get(tenant)
        held = self.inflight.get(tenant, 0)
        if cap is not None and held >= cap:
            return TooManyRequests(
                f"tenant '{tenant}' already has {held} requests in flight (its limit is {cap}); retry later",
                code="tenant_concurrency_limit",
            )
        return None

    def admit(self, tenant: str) -> "Ticket":
        """Count one request in, or raise TooManyRequests naming the tenant's cap; release the ticket when done."""
        err = self.over_cap(tenant)
        if err is not None:
            raise err
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
