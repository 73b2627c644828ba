"""Where things live on disk: the rayalign home (runs, databases, model cache) and the shared assets folder."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def uploaded_copy(root: Path = REPO_ROOT) -> bool:
    """True when this code runs from Ray's temporary copy of a ``ray job submit --working-dir`` upload
    (``<session>/runtime_resources/working_dir_files/_ray_pkg_<hash>/``), which disappears with the cluster."""
    return "working_dir_files" in root.parts or root.name.startswith("_ray_pkg_")


def rayalign_home() -> Path:
    """Root for local state: datasets, run storage, pipeline reports, SQLite databases, converted-model cache.

    ``$RAYALIGN_HOME`` wins. Otherwise ``<repo>/.rayalign`` (git-ignored), so a clone is self-contained — except
    when the code runs from an uploaded working-dir copy under ``ray job submit``: then ``~/.rayalign``, a place
    that outlives the job and the cluster (set ``$RAYALIGN_HOME`` to shared storage on a multi-node cluster).
    """
    default = Path("~/.rayalign") if uploaded_copy() else REPO_ROOT / ".rayalign"
    home = Path(os.environ.get("RAYALIGN_HOME", default)).expanduser()
    home.mkdir(parents=True, exist_ok=True)
    return home


def shared_dir() -> Path | None:
    """The team's shared assets (real model + data): ``$RAYALIGN_SHARED`` or ``<repo>/../shared``; None if absent."""
    candidate = Path(os.environ.get("RAYALIGN_SHARED", REPO_ROOT.parent / "shared")).expanduser()
    return candidate if candidate.is_dir() else None
