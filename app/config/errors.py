"""The one error type the config layer raises: a single human-readable line, no traceback needed."""

from __future__ import annotations


class ConfigError(ValueError):
    """A configuration problem, phrased as one line that names the file and the key."""
