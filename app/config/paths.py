"""Where things live on disk: the rayalign home (runs, databases, model cache) and the shared assets folder."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def rayalign_home() -> Path:
    """Root for local state: run storage, SQLite databases, converted-model cache.

    ``$RAYALIGN_HOME`` wins; otherwise ``<repo>/.rayalign`` (git-ignored), so a clone is self-contained.
    """
    home = Path(os.environ.get("RAYALIGN_HOME", REPO_ROOT / ".rayalign")).expanduser()
    home.mkdir(parents=True, exist_ok=True)
    return home


def shared_dir() -> Path | None:
    """The team's shared assets (real model + data): ``$RAYALIGN_SHARED`` or ``<repo>/../shared``; None if absent."""
    candidate = Path(os.environ.get("RAYALIGN_SHARED", REPO_ROOT.parent / "shared")).expanduser()
    return candidate if candidate.is_dir() else None
