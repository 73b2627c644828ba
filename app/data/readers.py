"""Readers: files, globs, saved HF dataset folders and s3:// URIs → a Ray Dataset of raw rows with provenance.

Every reader yields the same row shape, so validation treats all inputs alike::

    {"uid": int64, "source": str, "line": int64, "payload": bytes}

``line`` is the 1-based line of a JSONL file (the row number for Parquet/Arrow tables); ``payload`` is the raw line
bytes (JSONL) or the row as JSON (tables); ``uid = source_index·2^32 + line`` is a stable global row id. Files are
opened by Ray Data tasks on the workers and streamed out in blocks (``ReadLimits``: line length, gzip/Parquet
expansion and row-group size are bounded; a breach quarantines with a one-line reason), never loaded whole.
"""

from __future__ import annotations

import gzip
import io
import json
from dataclasses import dataclass
from typing import Any, Iterator

from app.data.errors import DataError

UID_SHIFT = 1 << 32
UNREADABLE = b"\x00unreadable file: "  # payload of the one row that stands for a refused or corrupt file
LONG_LINE = b"\x00long line: "  # payload of a JSONL line over max_line_bytes (never read into memory)


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


@dataclass(frozen=True)
class ReadLimits:
    """Bounds on what one input may cost a reader (IngestConfig ``limits``); a breach quarantines with one reason.

    ``max_line_bytes``: a longer JSONL line is skipped (read through in chunks, never held) and quarantined;
    ``max_expansion``: a gzip stream that inflates past this many times its compressed size, or a Parquet row group
    whose uncompressed size is that many times its compressed size, is refused (gzip bomb / Parquet bomb);
    ``max_row_group_bytes``: a larger uncompressed Parquet row group is refused; ``rows_per_block``: rows per output
    block (a file becomes a stream of blocks, never one block).
    """

    max_line_bytes: int = 8 << 20
    max_expansion: float = 64.0
    max_row_group_bytes: int = 512 << 20
    rows_per_block: int = 4096


class InputRefused(Exception):
    """An input breached a ReadLimits bound; the message is the one-line reason."""


def _jsonl_rows(stream, limits: ReadLimits, budget: int | None = None) -> Iterator[tuple[int, bytes]]:
    """(line number, payload) of a binary stream; an over-long line yields (n, None) after being skipped.

    ``budget``: decompressed bytes allowed in all (gzip bomb guard); exceeding it raises InputRefused.
    """
    n, total = 0, 0
    while True:
        line = stream.readline(limits.max_line_bytes + 1)
        if not line:
            return
        n += 1
        total += len(line)
        if len(line) > limits.max_line_bytes and not line.endswith(b"\n"):
            while line and not line.endswith(b"\n"):  # read the rest of the line through, in bounded chunks
                line = stream.readline(1 << 20)
                total += len(line)
                if budget is not None and total > budget:
                    raise InputRefused(f"decompresses past {budget} bytes (max_expansion): refusing a possible gzip bomb")
            yield n, None
            continue
        if budget is not None and total > budget:
            raise InputRefused(f"decompresses past {budget} bytes (max_expansion): refusing a possible gzip bomb")
        line = line.rstrip(b"\r\n")
        if line.strip():
            yield n, line


def iter_stream_rows(fh, reader: str, limits: ReadLimits = ReadLimits(), size: int | None = None
                     ) -> Iterator[tuple[int, bytes | None]]:
    """(line/row number, payload bytes) of one open binary file, streamed: memory is bounded by ``limits``.

    Blank JSONL lines are skipped (they are not rows); a JSONL line over ``max_line_bytes`` yields payload None.
    Raises InputRefused (gzip or Parquet bomb, oversized row group) with a one-line reason.
    """
    if reader == "jsonl":
        head = fh.read(2)
        fh.seek(0)
        if head == b"\x1f\x8b":
            budget = int(limits.max_expansion * size) if size else None
            yield from _jsonl_rows(gzip.GzipFile(fileobj=fh), limits, budget)
        else:
            yield from _jsonl_rows(fh, limits)
        return
    import pyarrow as pa
    import pyarrow.parquet as pq

    if reader == "parquet":
        pf = pq.ParquetFile(fh)
        for g in range(pf.metadata.num_row_groups):
            rg = pf.metadata.row_group(g)
            raw = rg.total_byte_size
            packed = sum(rg.column(c).total_compressed_size for c in range(rg.num_columns)) or 1
            if raw > limits.max_row_group_bytes:
                raise InputRefused(f"row group {g} decompresses to {raw} bytes > max_row_group_bytes {limits.max_row_group_bytes}")
            if raw / packed > limits.max_expansion:
                raise InputRefused(f"row group {g} decompresses {raw / packed:.0f}x its size ({packed} -> {raw} bytes) "
                                   f"> max_expansion {limits.max_expansion:g}")
        row = 0
        for batch in pf.iter_batches(batch_size=limits.rows_per_block):
            for r in batch.to_pylist():
                row += 1
                yield row, json.dumps(r, ensure_ascii=False, default=str).encode("utf-8")
        return
    if reader == "hf":
        data = fh.read()
        buf = pa.BufferReader(data)
        try:
            table = pa.ipc.open_stream(buf).read_all()
        except pa.ArrowInvalid:
            table = pa.ipc.open_file(pa.BufferReader(data)).read_all()
        for i, row in enumerate(table.to_pylist(), start=1):
            yield i, json.dumps(row, ensure_ascii=False, default=str).encode("utf-8")
        return
    raise DataError(f"unknown reader {reader!r}")


def iter_file_rows(data: bytes, reader: str, limits: ReadLimits = ReadLimits()) -> Iterator[tuple[int, bytes]]:
    """``iter_stream_rows`` over bytes already in memory (small files: benchmarks, the dedup command)."""
    for n, payload in iter_stream_rows(io.BytesIO(data), reader, limits, len(data)):
        if payload is None:
            raise DataError(f"line {n}: longer than max_line_bytes {limits.max_line_bytes}")
        yield n, payload


def read_sources(files: list[tuple[str, str]], limits: ReadLimits = ReadLimits()):
    """A Ray Dataset of raw rows (see module docstring) for the expanded ``files`` (order = index in ``files``).

    One Ray Data task per file opens it with fsspec and streams it out in blocks of ``limits.rows_per_block`` rows
    (a generator ``map_batches``), so neither the driver nor a worker ever holds a whole file. A breached limit or
    a corrupt file ends that file with one row carrying the reason (quarantined as field ``<file>``).
    """
    import numpy as np
    import ray

    def explode(batch: dict[str, Any]) -> Iterator[dict[str, Any]]:
        import fsspec

        for full, reader, index in zip(batch["path"], batch["reader"], batch["index"]):
            full, base = str(full), int(index) * UID_SHIFT
            cols: dict[str, list] = {"uid": [], "source": [], "line": [], "payload": []}

            def add(n: int, payload: bytes):
                cols["uid"].append(base + n), cols["source"].append(full), cols["line"].append(n)
                cols["payload"].append(payload)

            try:
                with fsspec.open(full, "rb") as fh:
                    size = getattr(fh, "size", None) or fh.seek(0, 2)
                    fh.seek(0)
                    for n, payload in iter_stream_rows(fh, str(reader), limits, size):
                        add(n, payload if payload is not None else
                            LONG_LINE + f"longer than max_line_bytes {limits.max_line_bytes}".encode())
                        if len(cols["uid"]) >= limits.rows_per_block:
                            yield {k: np.array(v, dtype=object if k == "payload" or k == "source" else None)
                                   for k, v in cols.items()}
                            cols = {k: [] for k in cols}
            except InputRefused as exc:
                add(0, UNREADABLE + str(exc).encode())
            except (OSError, EOFError, ValueError) as exc:  # corrupt gzip / parquet: the rest of the file is one bad row
                add(0, UNREADABLE + str(exc).encode())
            if cols["uid"]:
                yield {k: np.array(v, dtype=object if k in ("payload", "source") else None) for k, v in cols.items()}

    items = [{"path": f, "reader": r, "index": i} for i, (f, r) in enumerate(files)]
    return ray.data.from_items(items, override_num_blocks=max(1, len(items))).map_batches(
        explode, batch_size=1, batch_format="numpy")
