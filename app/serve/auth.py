"""Bearer API keys → tenants. Keys are stored only as sha256 digests and compared in constant time.

Reused by the job API (pipeline): ``KeyRing.from_specs(cfg.tenants).authenticate(request.headers.get("authorization"))``.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Iterable

from app.serve.errors import Unauthorized


def hash_key(key: str) -> str:
    """sha256 hex digest of an API key (what configs store)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class KeyRing:
    """Maps API-key digests to tenant names."""

    def __init__(self, digest_to_tenant: dict[str, str]):
        self._digests = dict(digest_to_tenant)

    @classmethod
    def from_specs(cls, tenants: Iterable) -> "KeyRing":
        """Build from ``TenantSpec``s (digests, plus an optional plaintext key read from an env var)."""
        table: dict[str, str] = {}
        for spec in tenants:
            digests = list(spec.api_key_sha256)
            if spec.api_key_env and os.environ.get(spec.api_key_env):
                digests.append(hash_key(os.environ[spec.api_key_env]))
            for digest in digests:
                digest = digest.strip().lower()
                if table.get(digest, spec.name) != spec.name:
                    raise ValueError(f"one API key is configured for two tenants: {table[digest]!r} and {spec.name!r}")
                table[digest] = spec.name
        return cls(table)

    @property
    def tenants(self) -> set[str]:
        return set(self._digests.values())

    def authenticate(self, authorization: str | None) -> str:
        """The tenant for an ``Authorization: Bearer <key>`` header value, else ``Unauthorized`` (401)."""
        if not authorization:
            raise Unauthorized("missing API key: send 'Authorization: Bearer <key>'")
        scheme, _, key = authorization.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise Unauthorized("malformed Authorization header: expected 'Bearer <key>'")
        digest = hash_key(key.strip())
        tenant = None
        for known, name in self._digests.items():  # scan all: timing does not reveal which key matched
            if hmac.compare_digest(known, digest):
                tenant = name
        if tenant is None:
            raise Unauthorized("invalid API key")
        return tenant
