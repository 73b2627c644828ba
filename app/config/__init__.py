"""Typed job configs: pydantic v2 schemas (extra='forbid'), YAML + dotted overrides, resolved dumps and hashes."""

from app.config.base import StrictModel
from app.config.errors import ConfigError
from app.config.loader import config_hash, dump_config, load_config, parse_overrides, resolved_dict

__all__ = ["StrictModel", "ConfigError", "config_hash", "dump_config", "load_config", "parse_overrides", "resolved_dict"]
