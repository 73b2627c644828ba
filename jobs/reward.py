"""Ray job: train a reward model (base + scalar head, Bradley–Terry) on a preference dataset artifact.

    ray job submit --working-dir . -- python -m jobs.reward --config configs/reward/smollm2_hh_lora.yaml
"""

from __future__ import annotations

import argparse
import json
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="reward YAML")
    parser.add_argument("overrides", nargs="*", help="dotted key=value overrides")
    args = parser.parse_args(argv)

    from app.config.loader import load_config
    from app.config.reward import RewardConfig
    from app.launch.preference import fit_preference

    cfg = load_config(args.config, RewardConfig, args.overrides)
    summary = fit_preference("reward", cfg)
    print(json.dumps({"run_name": summary["run_name"], "output_dir": summary["output_dir"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
