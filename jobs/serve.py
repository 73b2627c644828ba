"""Ray job: the OpenAI-compatible multi-LoRA Serve app (blocks while serving).

    ray job submit --working-dir . -- python -m jobs.serve --config configs/serve/smollm2_vllm.yaml

A shim over ``rayalign serve`` (app/commands/serve.py): the same flags and output, see ``jobs/entry.py``.
"""

from __future__ import annotations

import sys

from jobs.entry import run_command


def main(argv: list[str] | None = None) -> int:
    return run_command("jobs.serve", "serve", argv)


if __name__ == "__main__":
    sys.exit(main())
