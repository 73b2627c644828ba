"""Ray job: PPO / GRPO on a Ray actor group.

    ray job submit --working-dir . -- python -m jobs.ppo --config configs/ppo/smollm2_gsm8k_grpo_cpu.yaml

A shim over ``rayalign ppo`` (app/commands/ppo.py): the same flags and output, see ``jobs/entry.py``.
"""

from __future__ import annotations

import sys

from jobs.entry import run_command


def main(argv: list[str] | None = None) -> int:
    return run_command("jobs.ppo", "ppo", argv)


if __name__ == "__main__":
    sys.exit(main())
