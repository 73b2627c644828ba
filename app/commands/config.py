"""`rayalign config FILE [key=value ...]`: print the resolved config and its hash."""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from app.config.errors import ConfigError
from app.config.loader import config_hash, load_config, resolved_dict
from app.config.paths import REPO_ROOT
from app.config.registry import schema_for

HELP = "validate a config file and print the resolved config with its hash"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="a YAML under configs/")
    p.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. train.lr=1e-4")
    p.add_argument("--configs-root", default=str(REPO_ROOT / "configs"), help="root of the configs tree")


def run(args: argparse.Namespace) -> int:
    if not Path(args.file).is_file():
        raise ConfigError(f"config file not found: {args.file}")
    schema = schema_for(args.file, args.configs_root)
    cfg = load_config(args.file, schema, args.overrides)
    print(f"# schema: {schema.__module__}.{schema.__name__}\n# config_hash: {config_hash(cfg)}")
    print(yaml.safe_dump(resolved_dict(cfg), sort_keys=False), end="")
    return 0
