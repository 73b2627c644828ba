"""Ray job: DPO/IPO on a preference artifact; reference log-probs are precomputed into it first (Ray Data stage).

    ray job submit --working-dir . -- python -m jobs.dpo --config configs/dpo/smollm2_hh_lora.yaml
"""

from __future__ import annotations

import json
import sys

from jobs.entry import join_submitting_cluster, run_job


def dpo(args) -> int:
    from app.config.dpo import DPOConfig
    from app.config.loader import load_config
    from app.launch.preference import fit_preference

    cfg = load_config(args.config, DPOConfig, args.overrides)
    join_submitting_cluster(cfg)
    summary = fit_preference("dpo", cfg)
    print(json.dumps({"run_name": summary["run_name"], "output_dir": summary["output_dir"]}))
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_job("jobs.dpo", __doc__, dpo, argv)


if __name__ == "__main__":
    sys.exit(main())
