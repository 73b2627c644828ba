"""Adapters in an object store: ``<root>/<tenant>/<name>/`` under an ``s3://`` (or other fsspec) prefix, read per request.

The object-store twin of ``DirectoryResolver`` (``adapters.root: s3://bucket/adapters``): a tenant sees only the
folders under its own prefix (names are validated path segments, so no traversal), and the resolved ``version`` is a
hash of the URI and the remote files' content stamps (ETag / size, ``adapter_store.cache_key``), so a re-upload is a new
version for the lineage check and the metrics. This is the layout ray.serve.llm's LLMServer loads LoRA adapters from
(``vllm.backend=ray_serve_llm``: ``dynamic_lora_loading_path`` = the root, adapter id = ``<tenant>/<name>``).
"""

from __future__ import annotations

from pathlib import PurePosixPath

from app.serve.adapter_store import cache_key, remote_fs
from app.serve.names import validate_name
from app.serve.resolver import ResolvedAdapter


class ObjectStoreResolver:
    """Adapters at ``<root>/<tenant>/<name>/`` (peft files + rayalign_lineage.json) in an object store."""

    def __init__(self, root: str):
        self.root = root.rstrip("/")
        self._fs = None  # (filesystem, path of root inside it), opened on first use (in the replica, with its env)

    def _store(self):
        if self._fs is None:
            self._fs = remote_fs(self.root)
        return self._fs

    def resolve(self, tenant: str, name: str) -> ResolvedAdapter | None:
        validate_name(tenant, "tenant")
        validate_name(name)
        fs, root = self._store()
        try:
            listing = [i for i in fs.ls(f"{root}/{tenant}/{name}", detail=True) if i.get("type", "file") == "file"]
        except OSError:  # missing prefix, missing bucket
            return None
        if not any(PurePosixPath(i["name"]).name == "adapter_config.json" for i in listing):
            return None
        uri = f"{self.root}/{tenant}/{name}"
        return ResolvedAdapter(tenant, name, uri, cache_key(uri, listing))

    def list_names(self, tenant: str) -> list[str]:
        validate_name(tenant, "tenant")
        fs, root = self._store()
        try:
            entries = fs.ls(f"{root}/{tenant}", detail=True)
        except OSError:
            return []
        names = []
        for entry in entries:
            name = PurePosixPath(entry["name"]).name
            try:
                if entry.get("type") == "directory" and self.resolve(tenant, validate_name(name)) is not None:
                    names.append(name)
            except Exception:  # noqa: BLE001 - a stray oddly named prefix is just not an adapter
                continue
        return sorted(names)
