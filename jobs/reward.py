"""Ray job: train a reward model (base + scalar head, Bradley–Terry) on a preference dataset artifact.

    ray job submit --working-dir . -- python -m jobs.reward --config configs/reward/smollm2_hh_lora.yaml

Prints the run name, output folder and the held-out accuracy/margin before and after (JSON).
"""

from __future__ import annotations

import json
import sys

from jobs.entry import join_submitting_cluster, run_job


def reward(args) -> int:
    from app.commands.reward import summarize
    from app.config.loader import load_config
    from app.config.reward import RewardConfig
    from app.launch.preference import fit_preference

    cfg = load_config(args.config, RewardConfig, args.overrides)
    join_submitting_cluster(cfg)
    print(json.dumps(summarize(fit_preference("reward", cfg))))
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_job("jobs.reward", __doc__, reward, argv)


if __name__ == "__main__":
    sys.exit(main())
