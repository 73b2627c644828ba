"""`rayalign outputs [KIND ...]`: what earlier commands and jobs left in the rayalign home, newest first.

The home is ``$RAYALIGN_HOME``, else ``<clone>/.rayalign`` (``~/.rayalign`` for code run from a ``ray job submit``
upload; point ``RAYALIGN_HOME`` there to list a job's outputs from the clone). One line per output:

    datasets   tiny-sft/v1            2026-12-03 11:11  sft, 9 rows, id sft-de35ad1ef2ca4c3f
    outputs    tiny-sft               2026-12-03 11:12  lora on sft-de35ad1ef2ca4c3f
    adapters   default/tiny-sft       2026-12-03 11:13  -> adapters/default/.versions/tiny-sft/v1
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Iterator

HELP = "list what runs left in the rayalign home: datasets, trained outputs, runs, published adapters, reports, logs"
KINDS = ("datasets", "outputs", "runs", "adapters", "pipelines", "eval", "logs")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("kinds", nargs="*", metavar="KIND", help=f"only these kinds ({', '.join(KINDS)}); default: all")
    p.add_argument("--json", action="store_true", help="one JSON object per output instead of a table")


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def lineage_detail(folder: Path) -> str:
    lineage = read_json(folder / "rayalign_lineage.json")
    return f"{lineage.get('method', '?')} on {lineage.get('dataset_id', '?')}" if lineage else ""


def entries(home: Path, kind: str) -> Iterator[tuple[str, Path, str]]:
    """(name relative to the kind's folder, path, detail) of every output of ``kind`` under ``home``."""
    root = home / kind
    if not root.is_dir():
        return
    if kind == "datasets":  # <name>/<version>/manifest.json
        for manifest in sorted(root.glob("*/*/manifest.json")):
            m = read_json(manifest)
            detail = f"{m.get('record_type', '?')}, {m.get('rows_accepted', '?')} rows, id {m.get('id', '?')}"
            yield str(manifest.parent.relative_to(root)), manifest.parent, detail
    elif kind == "outputs":  # a trained adapter / model folder, possibly nested (<run>/<kind>)
        for lineage in sorted(root.glob("**/rayalign_lineage.json")):
            yield str(lineage.parent.relative_to(root)), lineage.parent, lineage_detail(lineage.parent)
    elif kind == "runs":  # Ray Train / PPO run folders (checkpoints; a finished run's adapter inside)
        for run in sorted(p for p in root.iterdir() if p.is_dir()):
            done = next((p.parent for p in run.glob("*/rayalign_lineage.json")), None)
            yield run.name, run, f"adapter {done.name}/: {lineage_detail(done)}" if done else "no final adapter"
    elif kind == "adapters":  # what Serve's directory resolver serves: <tenant>/<name> links
        for link in sorted(p for p in root.glob("*/*") if not p.name.startswith(".")):
            target = link.resolve()
            shown = target.relative_to(home) if target.is_relative_to(home) else target
            yield str(link.relative_to(root)), link, f"-> {shown}"
    elif kind in ("pipelines", "eval"):  # report folders
        for folder in sorted(p for p in root.iterdir() if p.is_dir()):
            report = next(iter(sorted(folder.glob("*.md"))), None)
            yield folder.name, folder, f"{report.name}" if report else ""
    elif kind == "logs":
        for log in sorted(root.glob("*.log")):
            yield log.name, log, f"{log.stat().st_size // 1024} KiB"


def run(args: argparse.Namespace) -> int:
    from app.config.errors import ConfigError
    from app.config.paths import rayalign_home

    unknown = [k for k in args.kinds if k not in KINDS]
    if unknown:
        raise ConfigError(f"unknown kind '{unknown[0]}' (one of {', '.join(KINDS)})")
    home = rayalign_home()
    rows = []
    for kind in args.kinds or KINDS:
        for name, path, detail in entries(home, kind):
            rows.append((path.lstat().st_mtime, kind, name, path, detail))
    rows.sort(key=lambda r: r[0], reverse=True)
    if args.json:
        for mtime, kind, name, path, detail in rows:
            print(json.dumps({"kind": kind, "name": name, "path": str(path), "modified": round(mtime),
                              "detail": detail}))
        return 0
    print(f"rayalign home: {home}" + ("" if rows else " (no outputs yet)"))
    for mtime, kind, name, path, detail in rows:
        stamp = time.strftime("%Y-%m-%d %H:%M", time.localtime(mtime))
        print(f"{kind:<10} {name:<28} {stamp}  {detail}".rstrip())
    return 0
