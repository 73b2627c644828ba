"""What every Ray job entrypoint is: ``python -m jobs.<job> ARGS`` runs ``rayalign <verb> ARGS`` — same flags, same code.

``jobs/<job>.py`` files are shims over ``app/commands/<verb>.py`` (through ``app.cli.main``), so ``ray job submit``
and the CLI cannot drift. User mistakes (bad config, missing file, unloadable model, bad data) are one line on
stderr with exit code 2. Inside ``ray job submit`` a config's ``ray.address: local`` joins the job's own cluster
(``app.launch.runtime.resolve_address``) and outputs go to the shared rayalign home, not to Ray's temporary copy of
the working directory (``app.config.paths.rayalign_home``).
"""

from __future__ import annotations

import sys


def run_command(job: str, verb: str, argv: list[str] | None = None) -> int:
    """``python -m <job> [-v] ARGS`` == ``rayalign [-v] <verb> ARGS``; returns the exit code."""
    from app.cli import main

    argv = sys.argv[1:] if argv is None else list(argv)
    verbose = [a for a in argv if a in ("-v", "--verbose")]
    rest = [a for a in argv if a not in ("-v", "--verbose")]
    return main([*verbose, verb, *rest], job=job)
