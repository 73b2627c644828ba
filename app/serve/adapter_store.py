"""Adapter files: read lineage, refuse a different base, and materialize remote (s3://…) adapters to local disk.

Remote adapters are cached per node under ``cache_dir/<sha256(uri + listing)>``: the key covers the URI and the
remote files' content stamps (ETag / checksum / size), so a re-uploaded adapter at the same URI is a new entry. Each
download goes to its own temporary folder (several replicas on one node may fetch the same adapter at once) and is
renamed into place atomically; the first rename wins and the others discard their copy. Error messages name the
adapter, never a server path or bucket.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import tempfile
import threading
from pathlib import Path

from app.serve.errors import Conflict, EngineUnavailable, NotFound

LINEAGE = "rayalign_lineage.json"
REQUIRED = ("adapter_config.json",)
_STAMP_KEYS = ("ETag", "etag", "checksum", "md5", "mtime", "LastModified", "last_modified")


def is_remote(uri: str) -> bool:
    """Whether an adapter URI names a remote object (``s3://`` …), not a local folder (``file://`` or a path)."""
    return "://" in uri and not uri.startswith("file://")


def remote_fs(uri: str):
    """(fsspec filesystem, path inside it) for a remote adapter URI. ``s3://`` goes through pyarrow's S3 filesystem with
    the same AWS_* endpoint and credential variables as run storage (app/launch/storage.py: MinIO, moto, R2 alike), so
    no s3fs is needed; other schemes through fsspec. A scheme with no filesystem installed is a NotFound naming the
    scheme, not an ImportError (a 500)."""
    from urllib.parse import urlparse

    scheme = urlparse(uri).scheme
    if scheme in ("s3", "s3a"):
        from fsspec.implementations.arrow import ArrowFSWrapper

        from app.launch.storage import object_store

        fs, root = object_store(uri, timeout_s=30.0, attempts=3)
        return ArrowFSWrapper(fs), root
    import fsspec

    try:
        return fsspec.core.url_to_fs(uri)
    except (ImportError, ValueError):
        raise NotFound(f"adapter URIs with scheme '{scheme}://' cannot be read by this server", param="model") from None


def read_lineage(uri: str, name: str = "") -> dict:
    """The adapter's ``rayalign_lineage.json`` (local or remote, see ``remote_fs``); NotFound when missing or unreadable."""
    try:
        if is_remote(uri):
            fs, root = remote_fs(uri)
            with fs.open(f"{root.rstrip('/')}/{LINEAGE}", "r") as fh:
                return json.load(fh)
        return json.loads((Path(uri.removeprefix("file://")) / LINEAGE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        what = f"adapter '{name}'" if name else "the adapter"
        raise NotFound(f"{what} has no readable {LINEAGE} ({type(exc).__name__})", param="model") from None


def check_base(lineage: dict, base_sha: str, name: str) -> None:
    """Refuse (409) an adapter whose lineage names a different base-weights SHA than the one being served."""
    got = lineage.get("base_sha")
    if got != base_sha:
        raise Conflict(
            f"adapter '{name}' was trained on base {str(got)[:12]}…, this endpoint serves base {base_sha[:12]}…",
            param="model",
        )


def cache_key(uri: str, listing: list[dict]) -> str:
    """Cache folder name for a remote adapter: sha256 of the URI and each file's name, size and content stamp."""
    parts = [uri.rstrip("/")]
    for info in sorted(listing, key=lambda i: i["name"]):
        stamp = next((str(info[k]) for k in _STAMP_KEYS if info.get(k) is not None), "")
        parts.append(f"{Path(info['name']).name}:{info.get('size')}:{stamp}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]


def materialize(uri: str, cache_dir: str | Path, *, label: str = "", cancel: threading.Event | None = None) -> Path:
    """A local folder with the adapter: the path itself, or the cached copy of a remote URI (downloaded when new).

    ``cancel`` set (a timed-out caller) stops the download between files and discards the partial copy.
    """
    what = f"adapter '{label}'" if label else "adapter"
    if not is_remote(uri):
        path = Path(uri.removeprefix("file://"))
        if not all((path / f).is_file() for f in REQUIRED):
            raise NotFound(f"{what} is missing {', '.join(REQUIRED)}", param="model")
        return path
    fs, root = remote_fs(uri)
    try:
        listing = [i for i in fs.ls(root, detail=True) if i.get("type", "file") == "file"]
    except OSError:  # FileNotFoundError, and pyarrow's S3 errors for a missing bucket or prefix
        raise NotFound(f"{what} does not exist", param="model") from None
    if not any(Path(i["name"]).name == "adapter_config.json" for i in listing):
        raise NotFound(f"{what} has no adapter_config.json", param="model")
    cache_dir = Path(cache_dir)
    target = cache_dir / cache_key(uri, listing)
    if (target / "adapter_config.json").is_file():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.part-", dir=cache_dir))  # this caller's own folder
    try:
        for info in listing:
            if cancel is not None and cancel.is_set():
                raise EngineUnavailable(f"{what} download was abandoned")
            fs.get(info["name"], str(tmp / Path(info["name"]).name))
        try:
            tmp.rename(target)  # atomic; fails when another replica's copy landed first
        except OSError:
            if not (target / "adapter_config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


async def materialize_async(uri: str, cache_dir: str | Path, *, label: str, timeout_s: float) -> Path:
    """``materialize`` on a worker thread, bounded by ``timeout_s`` (EngineUnavailable, 503, past it).

    No lock is held while it runs: concurrent requests for other adapters (or the base) are never blocked by it.
    """
    cancel = threading.Event()
    try:
        return await asyncio.wait_for(asyncio.to_thread(materialize, uri, cache_dir, label=label, cancel=cancel), timeout_s)
    except asyncio.TimeoutError:
        cancel.set()
        raise EngineUnavailable(f"adapter '{label}' could not be fetched within {timeout_s:g}s") from None
