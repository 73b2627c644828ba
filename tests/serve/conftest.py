"""Serve fixtures: real peft adapters in a tenant-scoped adapter root, API keys, one Serve HTTP proxy per session."""

from __future__ import annotations

import json
import socket
import statistics
from pathlib import Path

import pytest

KEYS = {"acme": "sk-acme-test-key", "globex": "sk-globex-test-key"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_adapter_root(root: Path, base_dir: Path, *, std: float, r: int) -> Path:
    """<root>/acme/{alpha,beta,promo->versions/promo-v1,wrongbase}, <root>/globex/gamma, all real peft adapters."""
    from app.serve.random_adapter import write_random_adapter

    for tenant, name, seed in (("acme", "alpha", 1), ("acme", "beta", 2), ("globex", "gamma", 3), ("acme", "wrongbase", 4)):
        write_random_adapter(base_dir, root / tenant / name, seed, std=std, r=r)
    lineage = root / "acme" / "wrongbase" / "rayalign_lineage.json"
    data = json.loads(lineage.read_text())
    data["base_sha"] = "0" * 64  # trained on some other base
    lineage.write_text(json.dumps(data))
    for version, seed in (("promo-v1", 11), ("promo-v2", 12)):
        write_random_adapter(base_dir, root / "acme" / "versions" / version, seed, std=std, r=r)
    (root / "acme" / "promo").symlink_to(root / "acme" / "versions" / "promo-v1", target_is_directory=True)
    return root


def repoint(link: Path, target: Path) -> None:
    """Atomically re-point a symlink (what a promote/rollback does to a directory-resolved adapter)."""
    tmp = link.with_name(link.name + ".tmp")
    tmp.symlink_to(target, target_is_directory=True)
    tmp.replace(link)


def leave_mid_stream(engine, url: str, key: str, body: dict) -> dict:
    """Stream ``body`` (a chat completion) from ``url``, read the role chunk and the first token, then leave; returns
    the engine's ``stats()`` once its ``cancelled`` count has moved (or after 20 s), with ``cancelled_before``."""
    import time

    import httpx

    before = engine.stats.remote().result()["cancelled"]
    with httpx.stream("POST", f"{url}/chat/completions", json=body, timeout=60, headers={"Authorization": f"Bearer {key}"}) as r:
        lines = r.iter_lines()
        next(lines), next(lines)  # role chunk + first token, then the client leaves
    deadline = time.time() + 20
    while time.time() < deadline and engine.stats.remote().result()["cancelled"] == before:
        time.sleep(0.2)
    return {**engine.stats.remote().result(), "cancelled_before": before}


def tenants_override() -> list[str]:
    from app.serve.auth import hash_key

    return [f"tenants=[{', '.join('{name: %s, api_key_sha256: [%s]}' % (t, hash_key(k)) for t, k in KEYS.items())}]"]


def percentiles(latencies: list[float]) -> tuple[float, float]:
    qs = statistics.quantiles(latencies, n=100, method="inclusive")
    return qs[49], qs[98]


@pytest.fixture(scope="session")
def serve_port(ray_local):
    """Serve's HTTP proxy on a free port (the machine is shared: never assume 8000); shut down at session end."""
    from ray import serve

    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    yield port
    serve.shutdown()
