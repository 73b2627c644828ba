"""Ray job: a Ray Tune sweep over a reward/DPO config (function trainables, each launching a TorchTrainer; ASHA).

    ray job submit --working-dir . -- python -m jobs.tune --config configs/sweep/smollm2_dpo_lr_rank.yaml
"""

from __future__ import annotations

import argparse
import json
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="sweep YAML")
    parser.add_argument("overrides", nargs="*", help="dotted key=value overrides of the sweep config")
    args = parser.parse_args(argv)

    from app.launch.tune import load_sweep, run_sweep

    summary = run_sweep(load_sweep(args.config, args.overrides))
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
