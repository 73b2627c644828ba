"""Dataset uploads: stream the request body to disk under a size bound, check its format, then publish atomically.

Nothing half-written ever appears: the body goes to ``<dir>/.<id>.part``; an oversized or malformed upload deletes
that file; a good one is renamed to its final name only after the last byte and the format check.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
FORMATS = {".jsonl": "jsonl", ".parquet": "parquet"}


class UploadTooLarge(Exception):
    """The body passed the configured limit (HTTP 413)."""


class UploadInvalid(ValueError):
    """The body is not a well-formed JSONL/Parquet dataset (HTTP 422); the message names the line or field."""


@dataclass(frozen=True)
class StoredUpload:
    file_id: str
    path: Path
    format: str
    bytes: int
    sha256: str
    rows: int


def check_filename(name: str) -> str:
    """A plain file name ending in .jsonl or .parquet (no directories, no traversal)."""
    if not _NAME.match(name or "") or ".." in name:
        raise UploadInvalid(f"filename {name!r}: use letters, digits, '.', '_' or '-' (no paths)")
    if Path(name).suffix not in FORMATS:
        raise UploadInvalid(f"filename {name!r}: must end in .jsonl or .parquet")
    return name


def count_rows(path: Path, fmt: str) -> int:
    """Rows in the file; UploadInvalid naming the first bad line (JSONL) or the parquet error."""
    if fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            return pq.ParquetFile(path).metadata.num_rows
        except Exception as exc:  # noqa: BLE001 - any reader error means "not parquet" (its text may name our path)
            raise UploadInvalid(f"not a readable Parquet file ({type(exc).__name__})") from None
    rows = 0
    with path.open("rb") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise UploadInvalid(f"line {lineno}: not valid JSON ({exc})") from None
            if not isinstance(record, dict):
                raise UploadInvalid(f"line {lineno}: each line must be a JSON object, got {type(record).__name__}")
            rows += 1
    if rows == 0:
        raise UploadInvalid("the file has no records")
    return rows


async def store_upload(chunks: AsyncIterator[bytes], filename: str, folder: Path, max_bytes: int) -> StoredUpload:
    """Stream ``chunks`` to ``folder``; UploadTooLarge / UploadInvalid leave nothing behind."""
    check_filename(filename)
    folder.mkdir(parents=True, exist_ok=True)
    file_id = "file-" + uuid.uuid4().hex[:20]
    fmt = FORMATS[Path(filename).suffix]
    part = folder / f".{file_id}.part"
    final = folder / f"{file_id}{Path(filename).suffix}"
    digest, size = hashlib.sha256(), 0
    try:
        with part.open("wb") as fh:
            async for chunk in chunks:
                size += len(chunk)
                if size > max_bytes:
                    raise UploadTooLarge(f"upload exceeds {max_bytes} bytes")
                digest.update(chunk)
                fh.write(chunk)
        rows = count_rows(part, fmt)
        os.replace(part, final)
    finally:
        part.unlink(missing_ok=True)
    return StoredUpload(file_id, final, fmt, size, digest.hexdigest(), rows)


def guess_record_type(path: Path, fmt: str) -> str:
    """'preference' when records carry chosen+rejected (or OpenAI's preferred/non_preferred_output), 'prompt' when
    only a prompt, else 'sft' (OpenAI chat ``{messages}``, {question, answer}, …), from the first record."""
    if fmt == "parquet":
        import pyarrow.parquet as pq

        keys = set(pq.ParquetFile(path).schema_arrow.names)
    else:
        with path.open("rb") as fh:
            first = next((line for line in fh if line.strip()), b"{}")
        keys = set(json.loads(first))
    if {"chosen", "rejected"} <= keys or {"preferred_output", "non_preferred_output"} <= keys:
        return "preference"  # rayalign pairs, or OpenAI's DPO format {input, preferred_output, non_preferred_output}
    if keys <= {"prompt", "id", "metadata"} and "prompt" in keys:
        return "prompt"
    return "sft"


async def file_chunks(fileobj, size: int = 1 << 20):
    """An uploaded (spooled) file as async chunks, for ``store_upload``."""
    while True:
        chunk = await fileobj.read(size)
        if not chunk:
            return
        yield chunk
