"""Ray job: DPO/IPO on a preference artifact; reference log-probs are precomputed into it first (--precompute-only stops there).

    ray job submit --working-dir . -- python -m jobs.dpo --config configs/dpo/smollm2_hh_lora.yaml

A shim over ``rayalign dpo`` (app/commands/dpo.py): the same flags and output, see ``jobs/entry.py``.
"""

from __future__ import annotations

import sys

from jobs.entry import run_command


def main(argv: list[str] | None = None) -> int:
    return run_command("jobs.dpo", "dpo", argv)


if __name__ == "__main__":
    sys.exit(main())
