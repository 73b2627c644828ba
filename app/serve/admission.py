"""Per-tenant admission at the ingress: a tenant over its concurrency cap gets 429; other tenants are unaffected.

The count is per ingress replica (an in-process counter, no round-trip): with N ingress replicas a tenant may hold up
to N × its cap in flight. The engine's bounded queue (``max_queued_requests``) is the global back-stop.
"""

from __future__ import annotations

from app.serve.errors import TooManyRequests


class TenantGate:
    """In-flight requests per tenant against ``caps`` (tenant → max concurrent; absent or None: uncapped)."""

    def __init__(self, caps: dict[str, int | None]):
        self.caps = dict(caps)
        self.inflight: dict[str, int] = {}

    def admit(self, tenant: str) -> "Ticket":
        """Count one request in, or raise TooManyRequests naming the tenant's cap; release the ticket when done."""
        cap = self.caps.get(tenant)
        held = self.inflight.get(tenant, 0)
        if cap is not None and held >= cap:
            raise TooManyRequests(
                f"tenant '{tenant}' already has {held} requests in flight (its limit is {cap}); retry later",
                code="tenant_concurrency_limit",
            )
        self.inflight[tenant] = held + 1
        return Ticket(self, tenant)


class Ticket:
    """One admitted request; ``release()`` is idempotent (called from a ``finally`` and from stream clean-up)."""

    def __init__(self, gate: TenantGate, tenant: str):
        self.gate, self.tenant, self.open = gate, tenant, True

    def release(self) -> None:
        if self.open:
            self.open = False
            self.gate.inflight[self.tenant] -= 1
