"""Ray job: reward model (Bradley–Terry) on a preference artifact.

    ray job submit --working-dir . -- python -m jobs.reward --config configs/reward/smollm2_hh_lora.yaml

A shim over ``rayalign reward`` (app/commands/reward.py): the same flags and output, see ``jobs/entry.py``.
"""

from __future__ import annotations

import sys

from jobs.entry import run_command


def main(argv: list[str] | None = None) -> int:
    return run_command("jobs.reward", "reward", argv)


if __name__ == "__main__":
    sys.exit(main())
