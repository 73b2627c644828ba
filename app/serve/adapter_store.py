"""Adapter files: read lineage, refuse a different base, and materialize remote (s3://…) adapters to local disk."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from app.serve.errors import Conflict, NotFound

LINEAGE = "rayalign_lineage.json"
REQUIRED = ("adapter_config.json",)


def _is_remote(uri: str) -> bool:
    return "://" in uri and not uri.startswith("file://")


def read_lineage(uri: str) -> dict:
    """The adapter's ``rayalign_lineage.json`` (local or remote via fsspec); NotFound when missing or unreadable."""
    try:
        if _is_remote(uri):
            import fsspec

            with fsspec.open(f"{uri.rstrip('/')}/{LINEAGE}", "r") as fh:
                return json.load(fh)
        return json.loads((Path(uri.removeprefix("file://")) / LINEAGE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise NotFound(f"adapter at {uri} has no readable {LINEAGE} ({type(exc).__name__})", param="model") from None


def check_base(lineage: dict, base_sha: str, name: str) -> None:
    """Refuse (409) an adapter whose lineage names a different base-weights SHA than the one being served."""
    got = lineage.get("base_sha")
    if got != base_sha:
        raise Conflict(
            f"adapter '{name}' was trained on base {str(got)[:12]}…, this endpoint serves base {base_sha[:12]}…",
            param="model",
        )


def materialize(uri: str, cache_dir: str | Path) -> Path:
    """A local folder with the adapter: the path itself, or a copy of a remote URI cached by URI hash (atomic)."""
    if not _is_remote(uri):
        path = Path(uri.removeprefix("file://"))
        if not all((path / f).is_file() for f in REQUIRED):
            raise NotFound(f"adapter folder {path} is missing {', '.join(REQUIRED)}", param="model")
        return path
    import fsspec

    target = Path(cache_dir) / hashlib.sha256(uri.encode()).hexdigest()[:24]
    if (target / "adapter_config.json").is_file():
        return target
    fs, root = fsspec.core.url_to_fs(uri)
    tmp = target.with_name(target.name + ".part")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        names = [p for p in fs.ls(root, detail=False)]
    except FileNotFoundError:
        raise NotFound(f"adapter {uri} does not exist", param="model") from None
    for remote in names:
        fs.get(remote, str(tmp / Path(remote).name))
    if not (tmp / "adapter_config.json").is_file():
        shutil.rmtree(tmp, ignore_errors=True)
        raise NotFound(f"adapter {uri} has no adapter_config.json", param="model")
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    return target
