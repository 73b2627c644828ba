"""Load a YAML job config into its schema, apply dotted ``key=value`` overrides, dump and hash the resolved result.

    cfg = load_config("configs/sft/smollm2_lora.yaml", SFTConfig, ["train.lr=1e-4", "lora.r=16"])
    config_hash(cfg)  # stable sha256 of the resolved config: lineage + duplicate-run detection
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Sequence, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from app.config.errors import ConfigError

M = TypeVar("M", bound=BaseModel)
_SCI_FLOAT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")


def parse_overrides(overrides: Sequence[str]) -> dict[str, Any]:
    """Turn ``["a.b=1", "c=[x, y]"]`` into a nested dict; values are parsed as YAML scalars/lists."""
    tree: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value (e.g. train.lr=1e-4)")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        if not all(parts):
            raise ConfigError(f"override {item!r} has an empty key segment")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
            if isinstance(value, str) and _SCI_FLOAT.match(value):
                value = float(value)  # YAML 1.1 reads "3e-4" as a string; users mean a number
        except yaml.YAMLError as exc:
            raise ConfigError(f"override {item!r}: value is not valid YAML ({exc.problem})") from None
        node = tree
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r} conflicts with another override of {part!r}")
        node[parts[-1]] = value
    return tree


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Recursively merge ``extra`` into a copy of ``base`` (dicts merge, everything else replaces)."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _format_validation_error(exc: ValidationError, source: str) -> str:
    problems = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "<root>"
        if err["type"] == "extra_forbidden":
            problems.append(f"unknown key '{key}'")
        elif err["type"] == "missing":
            problems.append(f"missing required key '{key}'")
        else:
            got = err.get("input")
            shown = f" (got {got!r})" if not isinstance(got, (dict, list)) else ""
            problems.append(f"'{key}': {err['msg']}{shown}")
    return f"{source}: " + "; ".join(problems)


def validate_config(data: dict[str, Any], schema: type[M], source: str = "<config>") -> M:
    """Validate a plain dict against ``schema``; errors become one ConfigError line naming ``source`` and keys."""
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc, source)) from None


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, with one-line errors for a missing file, bad YAML, or a non-mapping document."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{p}{where}: invalid YAML ({getattr(exc, 'problem', exc)})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: top level must be a mapping of keys, got {type(data).__name__}")
    return data


HOME_VAR = "${RAYALIGN_HOME}"
SHARED_VAR = "${RAYALIGN_SHARED}"


def expand_home(value: Any) -> Any:
    """Replace a leading ``${RAYALIGN_HOME}`` in every string with the rayalign home (``app.config.paths``), so a
    config can name another job's output (``data.artifact: ${RAYALIGN_HOME}/datasets/tiny-sft``) wherever it runs:
    in the clone, or under ``ray job submit`` where the working directory is a temporary copy. A leading
    ``${RAYALIGN_SHARED}`` becomes the shared assets folder (``$RAYALIGN_SHARED``, else ``<repo>/../shared``)."""
    if isinstance(value, str) and value.startswith(HOME_VAR):
        from app.config.paths import rayalign_home

        return str(rayalign_home()) + value[len(HOME_VAR):]
    if isinstance(value, str) and value.startswith(SHARED_VAR):
        from app.config.paths import REPO_ROOT, shared_dir

        return str(shared_dir() or REPO_ROOT.parent / "shared") + value[len(SHARED_VAR):]
    if isinstance(value, dict):
        return {k: expand_home(v) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_home(v) for v in value]
    return value


def load_config(path: str | Path | None, schema: type[M], overrides: Sequence[str] = ()) -> M:
    """Read YAML (or start from defaults when ``path`` is None), apply overrides, validate against ``schema``."""
    data = read_yaml(path) if path is not None else {}
    merged = expand_home(deep_merge(data, parse_overrides(overrides)))
    source = str(path) if path is not None else "<defaults>"
    if overrides:
        source += f" (+{len(overrides)} override{'s' if len(overrides) > 1 else ''})"
    return validate_config(merged, schema, source)


def resolved_dict(cfg: BaseModel) -> dict[str, Any]:
    """The fully resolved config (defaults filled in) as JSON-compatible data."""
    return cfg.model_dump(mode="json")


def dump_config(cfg: BaseModel, path: str | Path) -> Path:
    """Write the resolved config as YAML next to a run's outputs, with its hash in a header comment."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    body = yaml.safe_dump(resolved_dict(cfg), sort_keys=True)
    p.write_text(f"# config_hash: {config_hash(cfg)}\n{body}", encoding="utf-8")
    return p


def config_hash(cfg: BaseModel | dict[str, Any]) -> str:
    """Stable sha256 of the resolved config (canonical JSON, sorted keys); same settings, same hash."""
    data = resolved_dict(cfg) if isinstance(cfg, BaseModel) else cfg
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
