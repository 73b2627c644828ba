"""Adapter name → location: the resolver interface Serve asks on every request (so promotions apply without redeploy).

``DirectoryResolver`` reads ``<root>/<tenant>/<name>``; the entry may be a symlink to a version folder, and re-pointing
it (promote / rollback) changes the resolved ``version`` so the next request loads the new weights. Any other source
(the registry's production alias) plugs in as an object with the same two methods, built by
``adapters.kind=factory adapters.factory=module:function`` (the function receives the ServeConfig).
"""

from __future__ import annotations

import hashlib
import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from app.config.paths import rayalign_home
from app.serve.adapter_store import is_remote
from app.serve.names import validate_name


@dataclass(frozen=True)
class ResolvedAdapter:
    """One adapter version: where it lives (local path or s3:// URI) and a version tag that changes on promotion."""

    tenant: str
    name: str
    uri: str
    version: str

    @property
    def key(self) -> str:
        """Identity on an engine replica (multiplexed model id, peft adapter / LoRA name): a new version is a new key.

        No dots: peft stores adapters in ``nn.ModuleDict``s, whose keys may not contain '.'."""
        return f"{self.tenant}--{self.name}--{self.version[:12]}".replace(".", "_")


class AdapterResolver(Protocol):
    def resolve(self, tenant: str, name: str) -> ResolvedAdapter | None:
        """The adapter ``name`` of ``tenant``, or None when the tenant has no such adapter."""

    def list_names(self, tenant: str) -> list[str]:
        """Adapter names ``tenant`` may call."""


class DirectoryResolver:
    """Adapters at ``<root>/<tenant>/<name>/`` (peft folder + rayalign_lineage.json); a symlink may point only inside
    its own tenant's folder (never into another tenant's, never out of root)."""

    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser().resolve()

    def _folder(self, tenant: str, name: str) -> Path | None:
        validate_name(tenant, "tenant")
        validate_name(name)
        link = self.root / tenant / name
        if not link.exists():
            return None
        real = link.resolve()
        own = (self.root / tenant).resolve()
        if own != self.root / tenant or not real.is_relative_to(own) or not (real / "adapter_config.json").is_file():
            return None
        return real

    def resolve(self, tenant: str, name: str) -> ResolvedAdapter | None:
        real = self._folder(tenant, name)
        if real is None:
            return None
        weights = sorted(real.glob("adapter_model.*"))
        stamp = "|".join(f"{w.name}:{w.stat().st_size}:{w.stat().st_mtime_ns}" for w in weights)
        version = hashlib.sha256(f"{real}|{stamp}".encode()).hexdigest()
        return ResolvedAdapter(tenant, name, str(real), version)

    def list_names(self, tenant: str) -> list[str]:
        folder = self.root / validate_name(tenant, "tenant")
        if not folder.is_dir():
            return []
        names = []
        for entry in sorted(os.listdir(folder)):
            try:
                if self._folder(tenant, entry) is not None:
                    names.append(entry)
            except Exception:  # noqa: BLE001 - a stray oddly named file is just not an adapter
                continue
        return names


def build_resolver(cfg) -> AdapterResolver:
    """The resolver a ServeConfig asks for: ``directory`` (a folder, or ``ObjectStoreResolver`` for an ``s3://`` root); ``registry`` (app.serve.resolver_registry); ``factory``;
    ``auto`` (default): the directory when ``adapters.root`` is set, else the registry first and the default adapter
    folder after it when a registry database exists, else the folder."""
    spec = cfg.adapters
    if spec.kind == "factory":
        module, _, func = spec.factory.partition(":")
        return getattr(importlib.import_module(module), func)(cfg)
    if spec.root and is_remote(spec.root) and spec.kind in ("directory", "auto"):  # an object-store prefix (s3://...)
        store_mod = importlib.import_module("app.serve.resolver_store")  # by name: it builds on ResolvedAdapter (cycle)
        return store_mod.ObjectStoreResolver(spec.root)
    folder = DirectoryResolver(spec.root or rayalign_home() / "adapters")
    if spec.kind == "directory" or (spec.kind == "auto" and spec.root):
        return folder
    # imported by name: resolver_registry builds on this module's ResolvedAdapter (a static import would be a cycle)
    registry_mod = importlib.import_module("app.serve.resolver_registry")
    ChainResolver, RegistryResolver = registry_mod.ChainResolver, registry_mod.RegistryResolver
    if spec.kind == "registry":
        return RegistryResolver(spec.registry_url, spec.refresh_s)
    if spec.registry_url or (rayalign_home() / "registry.db").exists():
        return ChainResolver(RegistryResolver(spec.registry_url, spec.refresh_s), folder)
    return folder
