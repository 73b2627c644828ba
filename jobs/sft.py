"""Ray job: SFT / CPT training (full, LoRA, QLoRA) on Ray Train; exit 3 = preempted with a checkpoint, resubmit to resume.

    ray job submit --working-dir . -- python -m jobs.sft --config configs/sft/smollm2_lora_gsm8k.yaml data.artifact=…

A shim over ``rayalign train`` (app/commands/train.py): the same flags and output, see ``jobs/entry.py``.
"""

from __future__ import annotations

import sys

from jobs.entry import run_command


def main(argv: list[str] | None = None) -> int:
    return run_command("jobs.sft", "train", argv)


if __name__ == "__main__":
    sys.exit(main())
