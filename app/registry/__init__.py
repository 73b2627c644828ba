"""Adapter/dataset registry with lineage (SQLAlchemy: SQLite by default, PostgreSQL by URL) and MLflow mirroring."""

from app.registry.errors import BaseShaMismatch, GateNotPassed, RegistryError
from app.registry.store import ArtifactView, Registry, default_registry_url

__all__ = ["ArtifactView", "BaseShaMismatch", "GateNotPassed", "Registry", "RegistryError", "default_registry_url"]
