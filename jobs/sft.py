"""Ray job entrypoint for SFT / CPT training.

    ray job submit --working-dir . -- python -m jobs.sft --config configs/sft/smollm2_lora_gsm8k.yaml data.artifact=…

Parses ``--config FILE key=value…``, validates it against SFTConfig, and runs app.train.run.run_sft on the cluster
the job runs in (inside a submitted job, where RAY_ADDRESS is set, ``ray.address: local`` means ``auto``). Exit codes: 0 done, 3 preempted
(checkpoint saved; resubmit to resume), 1 failed, 2 bad config.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from app.config.errors import ConfigError
from app.config.loader import load_config
from app.config.sft import SFTConfig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="jobs.sft", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg = load_config(args.config, SFTConfig, args.overrides)
    except ConfigError as exc:
        print(f"jobs.sft: error: {exc}", file=sys.stderr)
        return 2
    if cfg.ray.address == "local" and os.environ.get("RAY_ADDRESS"):
        cfg.ray.address = "auto"  # inside `ray job submit`: join the job's cluster, never start a private one
    from app.train.run import TrainingFailed, run_sft

    try:
        outcome = run_sft(cfg)
    except TrainingFailed as exc:
        print(f"jobs.sft: failed: {exc}", file=sys.stderr)
        return 1
    print(f"{outcome.run_name}: {outcome.status} at step {outcome.step}; output {outcome.output_dir}")
    return 3 if outcome.status == "preempted" else 0


if __name__ == "__main__":
    sys.exit(main())
