"""Per-item results of the BASE model, scored once per (base weights SHA, suite hash) and reused by every adapter.

Every gate compares an adapter with its base on the same items. The base's side of that comparison does not depend
on the adapter, so re-scoring it for each candidate doubled the gate run's cost. The first run on a suite stores
the base's per-item fields (every ``base_*`` key of each suite record: NLLs, generations, correct / refused flags,
harmlessness scores) here; later runs score the adapter only and merge these back, so every gate stays paired
item by item (the regression gate included, which used to fall back on an unpaired stored base score).

Cache key (``suite_hash``): the exact suite rows (suite + payload, so the items, their order, the conditioning
partner answers), the token cap, the generation lengths, the generate chunk size, the rows per worker call and the
worker count (they decide which prompts share a left-padded generate call, and greedy generation can depend on the
padding), the safety scorer folder, and the torch / transformers / peft versions. The base
weights' SHA names the file. Anything else changes -> another file: a stale base is never compared.

    key = suite_hash(rows, cfg, scorer_dir)
    base = load(cache_dir(), base_sha, key)      # {suite: {id: {"base_nll": ..., ...}}} or None
    records = merge(records, base)               # adapter-only records + the base's fields
    save(cache_dir(), base_sha, key, records)    # after a run that scored the base
"""

from __future__ import annotations

import hashlib
import json
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

BASE_PREFIX = "base_"
FORMAT = 3  # bump when the suites' base fields may change (2: generation in length-sorted chunks; 3: grouped-query sdpa)


def _versions() -> dict[str, str]:
    out = {}
    for pkg in ("torch", "transformers", "peft"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "absent"
    return out


def suite_hash(rows: list[dict], cfg, scorer_dir: str | None) -> str:
    """sha256 over everything that decides the base model's per-item results (see the module docstring)."""
    ident = {"format": FORMAT, "rows": [[r["suite"], r["payload"]] for r in rows],
             "max_length": cfg.data.max_length, "task_tokens": cfg.generation.task_max_new_tokens,
             "safety_tokens": cfg.generation.safety_max_new_tokens, "batch_size": cfg.generation.batch_size,
             "rows_per_call": cfg.generation.rows_per_call, "workers": cfg.workers,
             "scorer": scorer_dir, "versions": _versions()}
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()


def cache_path(root: Path, base_sha: str, key: str) -> Path:
    return Path(root) / f"{base_sha[:16]}-{key[:16]}.json"


def load(root: Path, base_sha: str, key: str) -> dict[str, dict[int, dict]] | None:
    """The base's fields per suite and item id, or None when this (base, suite) was never scored."""
    path = cache_path(root, base_sha, key)
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    if data.get("base_sha") != base_sha or data.get("suite_hash") != key:
        return None
    return {suite: {int(i): fields for i, fields in items.items()} for suite, items in data["suites"].items()}


def base_fields(records: dict[str, list[dict]]) -> dict[str, dict[int, dict]]:
    """The ``base_*`` fields of every record, by suite and item id."""
    return {suite: {int(r["id"]): {k: v for k, v in r.items() if k.startswith(BASE_PREFIX)} for r in rows}
            for suite, rows in records.items() if rows}


def save(root: Path, base_sha: str, key: str, records: dict[str, list[dict]]) -> Path:
    """Store the base's per-item fields (written atomically: a reader never sees half a file)."""
    fields = base_fields(records)
    missing = [s for s, items in fields.items() if not any(items.values())]
    if missing:
        raise ValueError(f"base cache: suites {missing} carry no base_* fields (was the base scored?)")
    path = cache_path(root, base_sha, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"base_sha": base_sha, "suite_hash": key, "suites": fields}))
    tmp.replace(path)
    return path


def merge(records: dict[str, list[dict]], base: dict[str, dict[int, dict]]) -> dict[str, list[dict]]:
    """Adapter-only records + the cached base fields, item by item (raises if an item has no cached base)."""
    out = {}
    for suite, rows in records.items():
        cached = base.get(suite, {})
        merged = []
        for r in rows:
            if int(r["id"]) not in cached:
                raise KeyError(f"base cache has no {suite} item {r['id']}: the cache key does not match the suite")
            merged.append({**r, **cached[int(r["id"])]})
        out[suite] = merged
    return out
