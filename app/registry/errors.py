"""Registry errors. They subclass ConfigError so the CLI shows them as one line (exit 2), like any user error."""

from __future__ import annotations

from app.config.errors import ConfigError


class RegistryError(ConfigError):
    """A registry request that cannot be honoured (unknown name, bad stage move, invalid lineage); message says why."""


class GateNotPassed(RegistryError):
    """Promotion to staging/production of an artifact whose eval gates did not pass (or never ran)."""


class BaseShaMismatch(RegistryError):
    """An adapter was trained on different base weights than the ones loaded: serving it would be silently wrong."""
