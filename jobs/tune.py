"""Ray job: Ray Tune sweep (ASHA) over any config key.

    ray job submit --working-dir . -- python -m jobs.tune --config configs/sweep/smollm2_dpo_lr_rank.yaml

A shim over ``rayalign tune`` (app/commands/tune.py): the same flags and output, see ``jobs/entry.py``.
"""

from __future__ import annotations

import sys

from jobs.entry import run_command


def main(argv: list[str] | None = None) -> int:
    return run_command("jobs.tune", "tune", argv)


if __name__ == "__main__":
    sys.exit(main())
