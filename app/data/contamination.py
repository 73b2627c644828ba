"""Benchmark contamination scan: index benchmark files once, then test rows in parallel (math in app.core.contamination)."""

from __future__ import annotations

import json
from pathlib import Path

from app.core.contamination import build_ngram_index, find_overlaps
from app.data.errors import DataError
from app.data.readers import expand_source, iter_file_rows


def load_benchmark_items(patterns: list[str], fields: list[str]) -> list[tuple[str, str]]:
    """(item id, text) for every row of the benchmark files; id = '<file name>:<line>'; text = the given fields."""
    import fsspec

    items = []
    for pattern in patterns:
        for path, reader in expand_source(pattern):
            with fsspec.open(path, "rb") as fh:
                data = fh.read()
            for line, payload in iter_file_rows(data, reader):
                try:
                    row = json.loads(payload)
                except json.JSONDecodeError:
                    raise DataError(f"{path} line {line}: benchmark row is not valid JSON") from None
                text = "\n".join(str(row[f]) for f in fields if isinstance(row.get(f), (str, int, float)))
                if not text:
                    raise DataError(f"{path} line {line}: none of the fields {fields} present")
                items.append((f"{Path(path).name}:{line}", text))
    return items


def build_index(patterns: list[str], fields: list[str], n: int) -> tuple[dict[int, list[str]], int]:
    """The n-gram index over all benchmark items and the number of items indexed."""
    items = load_benchmark_items(patterns, fields)
    return build_ngram_index(items, n), len(items)


def scan_texts(texts: list[str], index: dict[int, list[str]], n: int, min_hits: int) -> list[dict[str, int]]:
    """Per text: benchmark item id -> shared n-grams (empty dict = clean)."""
    return [find_overlaps(t, index, n, min_hits) for t in texts]
