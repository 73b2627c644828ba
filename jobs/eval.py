"""Ray job: run the eval gates on an adapter vs its base, record the decision in the registry, write the report.

    ray job submit --working-dir . -- python -m jobs.eval --config configs/eval/smollm2_gates.yaml adapter=<dir> registry.name=<name>

Exit code 0 when the adapter passed every blocking gate, 1 when a gate blocked it, 2 on a config error.
"""

from __future__ import annotations

import sys

from jobs.entry import run_job


def evaluate(args) -> int:
    from app.commands.eval import run

    return run(args)


def main(argv: list[str] | None = None) -> int:
    return run_job("jobs.eval", __doc__, evaluate, argv)


if __name__ == "__main__":
    sys.exit(main())
