"""Serve's registry-backed adapter resolver: what a name means is what the registry says, read per request.

    model "math"                                   → the tenant's production version of "math"; with a canary,
                                                     ``share`` of the requests get the canary version instead
    model "ft:tiny-llama:acme:demo:0a1b2c3d4e5f"   → the exact version that fine-tuning job registered

Routing per (tenant, name) is read from the registry on every request by default (``refresh_s`` 0; a positive value
caches it that long), so ``promote`` / ``rollback`` / canary changes (``app.registry.rollout``, the job API's
/v1/models routes, ``rayalign registry``) apply to the next request, without a redeploy. The canary split is deterministic per resolver: request k goes to the canary when
⌊(k+1)·share⌋ > ⌊k·share⌋, so any window of n requests sends ⌊n·share⌋ or ⌈n·share⌉ to it (exactly 100 of 1,000
at 10%). The resolved ``version`` is ``v<N>-<uri hash>``: a new registry version is a new engine key.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import defaultdict

from app.serve.resolver import ResolvedAdapter


def _version(number: int, uri: str) -> str:
    return f"v{number}-{hashlib.sha256(uri.encode()).hexdigest()[:10]}"


class RegistryResolver:
    """``resolve(tenant, name)`` from the registry database at ``url`` (None: the default registry)."""

    def __init__(self, url: str | None = None, refresh_s: float = 0.0):
        from app.registry.store import Registry

        self.registry = Registry(url)
        self.refresh_s = refresh_s
        self._cache: dict[tuple[str, str], tuple[float, object]] = {}
        self._counters: dict[tuple[str, str], int] = defaultdict(int)
        self._lock = threading.Lock()

    def _routing(self, tenant: str, name: str):
        from app.registry.rollout import routing

        key = (tenant, name)
        hit = self._cache.get(key)
        now = time.monotonic()
        if hit is None or now - hit[0] > self.refresh_s:
            hit = (now, routing(self.registry, tenant, name))
            self._cache[key] = hit
        return hit[1]

    def _take_canary(self, tenant: str, name: str, share: float) -> bool:
        with self._lock:
            k = self._counters[(tenant, name)]
            self._counters[(tenant, name)] = k + 1
        return int((k + 1) * share) > int(k * share)

    def resolve(self, tenant: str, name: str) -> ResolvedAdapter | None:
        from app.registry.errors import RegistryError
        from app.serve.names import validate_name

        validate_name(tenant, "tenant")
        if name.startswith("ft:"):
            return self._fine_tuned(tenant, name)
        validate_name(name)
        try:
            route = self._routing(tenant, name)
        except RegistryError:
            return None
        if route.canary is not None and self._take_canary(tenant, name, route.canary[2]):
            number, uri = route.canary[0], route.canary[1]
        elif route.production is not None:
            number, uri = route.production
        else:
            return None
        return ResolvedAdapter(tenant, name, uri, _version(number, uri))

    def _fine_tuned(self, tenant: str, model: str) -> ResolvedAdapter | None:
        """An ``ft:`` id: only its own tenant's, pinned to the version its job registered."""
        from app.registry.rollout import alias_target, parse_fine_tuned_model

        parsed = parse_fine_tuned_model(model)
        if parsed is None or parsed[1] != tenant:
            return None
        target = alias_target(self.registry, tenant, model)
        if target is None:
            return None
        view = self.registry.show(tenant, *target)
        return ResolvedAdapter(tenant, target[0], view.uri, _version(view.version, view.uri))

    def list_names(self, tenant: str) -> list[str]:
        """Names with a production version, then the tenant's fine-tuned model ids."""
        from app.registry.rollout import aliases

        return sorted({v.name for v in self.registry.list(tenant, stage="production")}) + aliases(self.registry, tenant)


class ChainResolver:
    """The first resolver that knows the name wins (registry first, then the adapter folder)."""

    def __init__(self, *resolvers):
        self.resolvers = resolvers

    def resolve(self, tenant: str, name: str) -> ResolvedAdapter | None:
        for resolver in self.resolvers:
            try:
                found = resolver.resolve(tenant, name)
            except Exception:  # noqa: BLE001 - a name one resolver refuses (e.g. 'ft:' in a folder) may suit the next
                found = None
            if found is not None:
                return found
        return None

    def list_names(self, tenant: str) -> list[str]:
        seen: list[str] = []
        for resolver in self.resolvers:
            seen += [n for n in resolver.list_names(tenant) if n not in seen]
        return seen


def build(cfg) -> RegistryResolver:
    """``adapters.kind=factory adapters.factory=app.serve.resolver_registry:build`` (or kind=registry)."""
    return RegistryResolver(cfg.adapters.registry_url, cfg.adapters.refresh_s)
