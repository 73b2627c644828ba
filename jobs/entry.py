"""The shape every Ray job entrypoint shares: ``python -m jobs.<job> --config FILE [key=value …]``.

``run_job`` parses the arguments, sets up logging, runs the job's function and turns the user's mistakes (bad config,
missing file, unloadable model, bad data) into one line on stderr with exit code 2, the same as the ``rayalign`` CLI.
Inside ``ray job submit`` (``RAY_ADDRESS`` is set) a config's ``ray.address: local`` means the job's own cluster:
``join_submitting_cluster`` switches it to ``auto`` so a job never starts a private cluster next to it.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable


def join_submitting_cluster(cfg) -> None:
    """``ray.address: local`` → ``auto`` when this process runs as a submitted Ray job (in place)."""
    ray_spec = getattr(cfg, "ray", None)
    if ray_spec is not None and ray_spec.address == "local" and os.environ.get("RAY_ADDRESS"):
        ray_spec.address = "auto"


def run_job(prog: str, doc: str, job: Callable[[argparse.Namespace], int | None], argv: list[str] | None = None,
            add_arguments: Callable[[argparse.ArgumentParser], None] | None = None) -> int:
    """Parse ``--config FILE [key=value …]`` (plus ``add_arguments``), run ``job(args)``; its int is the exit code."""
    from app.cli import user_errors

    parser = argparse.ArgumentParser(prog=f"python -m {prog}", description=doc,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="job YAML (configs/…)")
    parser.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. train.lr=1e-4")
    if add_arguments is not None:
        add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(job(args) or 0)
    except user_errors() as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
