"""API keys -> tenants for the job API.

Same shape as the serving app's auth (``Authorization: Bearer <key>`` → tenant). Keys come from a YAML/JSON file
mapping key → tenant, or from ``$RAYALIGN_API_KEYS`` as ``key:tenant,key:tenant``. Keys are compared in constant time.
"""

from __future__ import annotations

import hmac
import json
import os
from pathlib import Path

import yaml

from app.config.errors import ConfigError


def load_api_keys(path: str | None = None) -> dict[str, str]:
    """{api key: tenant}; a ConfigError when none are configured (an API without keys would be open to all)."""
    if path:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"API keys file not found: {p}")
        text = p.read_text(encoding="utf-8")
        data = json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
        if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
            raise ConfigError(f"{p}: must map API key strings to tenant strings")
        keys = data
    else:
        raw = os.environ.get("RAYALIGN_API_KEYS", "")
        keys = dict(item.split(":", 1) for item in raw.split(",") if ":" in item)
    if not keys:
        raise ConfigError("no API keys configured: set api_keys_file or RAYALIGN_API_KEYS=key:tenant,...")
    short = [t for k, t in keys.items() if len(k) < 16]
    if short:
        raise ConfigError(f"API keys must be at least 16 characters (tenants {sorted(set(short))})")
    return keys


def tenant_for(authorization: str | None, keys: dict[str, str]) -> str | None:
    """The tenant a ``Bearer`` header authenticates, or None."""
    if not authorization or not authorization.startswith("Bearer "):
        return None
    presented = authorization[len("Bearer "):].strip().encode()
    found = None
    for key, tenant in keys.items():
        if hmac.compare_digest(presented, key.encode()):
            found = tenant
    return found
