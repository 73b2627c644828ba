"""Ray job: ingest raw files into a dataset artifact (read → validate → dedup → contamination → tokenize → pack).

    ray job submit --working-dir . -- python -m jobs.ingest --config configs/ingest/smollm2_gsm8k_sft.yaml

A shim over ``rayalign ingest`` (app/commands/ingest.py): the same flags and output, see ``jobs/entry.py``.
"""

from __future__ import annotations

import sys

from jobs.entry import run_command


def main(argv: list[str] | None = None) -> int:
    return run_command("jobs.ingest", "ingest", argv)


if __name__ == "__main__":
    sys.exit(main())
