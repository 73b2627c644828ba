"""Readers: files, globs, saved HF dataset folders and s3:// URIs → a Ray Dataset of raw rows with provenance.

Every reader yields the same row shape, so validation treats all inputs alike::

    {"uid": int64, "source": str, "line": int64, "payload": bytes}

``line`` is the 1-based line of a JSONL file (the row number for Parquet/Arrow tables); ``payload`` is the raw line
bytes (JSONL) or the row as JSON (tables); ``uid = source_index·2^32 + line`` is a stable global row id. Files are
read by Ray Data tasks on the workers (``read_binary_files``), never loaded whole into the driver; ``.gz`` files are
decompressed as a stream.
"""

from __future__ import annotations

import gzip
import io
import json
from typing import Any, Iterator

from app.data.errors import DataError

UID_SHIFT = 1 << 32


def expand_source(path: str, reader: str = "auto") -> list[tuple[str, str]]:
    """A path, glob, folder or URI → sorted [(file, reader)], resolving ``auto`` from extensions. DataError if empty."""
    import fsspec

    fs, root = fsspec.core.url_to_fs(path)
    proto = path.split("://", 1)[0] + "://" if "://" in path else ""
    if fs.isdir(root):
        arrow = sorted(p for p in fs.ls(root, detail=False) if p.endswith(".arrow"))
        if reader in ("auto", "hf") and arrow:
            return [(proto + p, "hf") for p in arrow]
        files = sorted(p for p in fs.find(root) if _reader_for(p) is not None)
    elif any(ch in root for ch in "*?["):
        files = sorted(fs.glob(root))
    elif fs.isfile(root):
        files = [root]
    else:
        raise DataError(f"{path}: no such file, folder or glob match")
    out = []
    for f in files:
        r = reader if reader != "auto" else _reader_for(f)
        if r is None:
            raise DataError(f"{proto + f}: cannot tell the reader from the extension; set reader: jsonl|parquet|hf")
        out.append((proto + f, r))
    if not out:
        raise DataError(f"{path}: matched no input files")
    return out


def _reader_for(path: str) -> str | None:
    name = path.lower()
    if name.endswith((".jsonl", ".json", ".jsonl.gz", ".json.gz", ".ndjson")):
        return "jsonl"
    if name.endswith(".parquet"):
        return "parquet"
    if name.endswith(".arrow"):
        return "hf"
    return None


def iter_file_rows(data: bytes, reader: str) -> Iterator[tuple[int, bytes]]:
    """(line/row number, payload bytes) for one file's content; blank JSONL lines are skipped (they are not rows)."""
    if reader == "jsonl":
        stream = gzip.GzipFile(fileobj=io.BytesIO(data)) if data[:2] == b"\x1f\x8b" else io.BytesIO(data)
        for i, line in enumerate(stream, start=1):
            line = line.rstrip(b"\r\n")
            if line.strip():
                yield i, line
        return
    import pyarrow as pa
    import pyarrow.parquet as pq

    if reader == "parquet":
        table = pq.read_table(pa.BufferReader(data))
    elif reader == "hf":
        buf = pa.BufferReader(data)
        try:
            table = pa.ipc.open_stream(buf).read_all()
        except pa.ArrowInvalid:
            table = pa.ipc.open_file(pa.BufferReader(data)).read_all()
    else:
        raise DataError(f"unknown reader {reader!r}")
    for i, row in enumerate(table.to_pylist(), start=1):
        yield i, json.dumps(row, ensure_ascii=False, default=str).encode("utf-8")


def read_sources(files: list[tuple[str, str]]):
    """A Ray Dataset of raw rows (see module docstring) for the expanded ``files`` (order = index in ``files``)."""
    import ray
    import fsspec

    index = {f: i for i, (f, _) in enumerate(files)}
    readers = {f: r for f, r in files}
    remote = [f for f, _ in files if "://" in f]
    fs = None
    if remote:
        fs = fsspec.core.url_to_fs(remote[0])[0]
    paths = [f.split("://", 1)[1] if fs is not None and "://" in f else f for f, _ in files]
    strip = {p: f for p, (f, _) in zip(paths, files)}

    def explode(row: dict[str, Any]) -> list[dict[str, Any]]:
        path = row["path"]
        full = strip.get(path) or strip.get(path.lstrip("/")) or next(f for p, f in strip.items() if path.endswith(p))
        base = index[full] * UID_SHIFT
        try:
            return [
                {"uid": base + n, "source": full, "line": n, "payload": payload}
                for n, payload in iter_file_rows(row["bytes"], readers[full])
            ]
        except (OSError, EOFError, ValueError) as exc:  # corrupt gzip / parquet: the whole file is one bad row
            return [{"uid": base, "source": full, "line": 0, "payload": f"\x00unreadable file: {exc}".encode()}]

    kwargs = {"filesystem": fs} if fs is not None else {}
    ds = ray.data.read_binary_files(paths, include_paths=True, **kwargs)
    return ds.flat_map(explode)
