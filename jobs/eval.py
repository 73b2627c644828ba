"""Ray job: eval suites + gates on an adapter; the decision is recorded in the registry.

    ray job submit --working-dir . -- python -m jobs.eval --config configs/eval/smollm2_gates.yaml adapter=<dir> registry.name=math

A shim over ``rayalign eval`` (app/commands/eval.py): the same flags and output, see ``jobs/entry.py``.
"""

from __future__ import annotations

import sys

from jobs.entry import run_command


def main(argv: list[str] | None = None) -> int:
    return run_command("jobs.eval", "eval", argv)


if __name__ == "__main__":
    sys.exit(main())
