"""Ray job: a Ray Tune sweep over a reward/DPO config (function trainables, each launching a TorchTrainer; ASHA).

    ray job submit --working-dir . -- python -m jobs.tune --config configs/sweep/smollm2_dpo_lr_rank.yaml
"""

from __future__ import annotations

import json
import sys

from jobs.entry import join_submitting_cluster, run_job


def tune(args) -> int:
    from app.launch.tune import load_sweep, run_sweep

    sweep = load_sweep(args.config, args.overrides)
    join_submitting_cluster(sweep)
    print(json.dumps(run_sweep(sweep)))
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_job("jobs.tune", __doc__, tune, argv)


if __name__ == "__main__":
    sys.exit(main())
