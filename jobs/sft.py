"""Ray job entrypoint for SFT / CPT training.

    ray job submit --working-dir . -- python -m jobs.sft --config configs/sft/smollm2_lora_gsm8k.yaml data.artifact=…

Validates the config against SFTConfig and runs app.train.run.run_sft on the cluster the job runs in (inside a
submitted job ``ray.address: local`` means ``auto``). Exit codes: 0 done, 3 preempted (checkpoint saved; resubmit
to resume), 1 failed, 2 bad config.
"""

from __future__ import annotations

import sys

from jobs.entry import join_submitting_cluster, run_job


def sft(args) -> int:
    from app.config.loader import load_config
    from app.config.sft import SFTConfig
    from app.train.run import TrainingFailed, run_sft

    cfg = load_config(args.config, SFTConfig, args.overrides)
    join_submitting_cluster(cfg)
    try:
        outcome = run_sft(cfg)
    except TrainingFailed as exc:
        print(f"jobs.sft: failed: {exc}", file=sys.stderr)
        return 1
    print(f"{outcome.run_name}: {outcome.status} at step {outcome.step}; output {outcome.output_dir}")
    return 3 if outcome.status == "preempted" else 0


def main(argv: list[str] | None = None) -> int:
    return run_job("jobs.sft", __doc__, sft, argv)


if __name__ == "__main__":
    sys.exit(main())
