"""Ray job: the end-to-end pipeline (also what every job-API job runs).

    ray job submit --working-dir . -- python -m jobs.pipeline --config configs/pipeline/demo.yaml

A shim over ``rayalign pipeline`` (app/commands/pipeline.py): the same flags and output, see ``jobs/entry.py``.
"""

from __future__ import annotations

import sys

from jobs.entry import run_command


def main(argv: list[str] | None = None) -> int:
    return run_command("jobs.pipeline", "pipeline", argv)


if __name__ == "__main__":
    sys.exit(main())
