"""Promotion publishes an adapter to Serve's directory resolver by one atomic link swap (no redeploy)."""

from __future__ import annotations

import json

from app.pipeline.stages import publish_adapter
from app.serve.resolver import DirectoryResolver


def make_adapter(folder, weights: bytes):
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text(json.dumps({"r": 4}))
    (folder / "adapter_model.safetensors").write_bytes(weights)
    return folder


def test_publish_then_repoint(tmp_path):
    root = tmp_path / "adapters"
    v1 = make_adapter(tmp_path / "runs/a/adapter", b"one")
    v2 = make_adapter(tmp_path / "runs/b/adapter", b"two!")
    resolver = DirectoryResolver(root)
    publish_adapter(str(v1), "acme", "math", 1, root)
    first = resolver.resolve("acme", "math")
    assert first is not None and first.uri.endswith("v1") and resolver.list_names("acme") == ["math"]
    publish_adapter(str(v2), "acme", "math", 2, root)
    second = resolver.resolve("acme", "math")
    assert second.uri.endswith("v2") and second.version != first.version  # Serve sees a new version
    assert resolver.resolve("other", "math") is None  # published for one tenant only
    assert not [p for p in (root / "acme").iterdir() if p.name.startswith(".math.")]  # no temp links left
    assert resolver.list_names("acme") == ["math"]  # the tenant's .versions store is not an adapter name
