"""Ray job: DPO/IPO on a preference artifact; reference log-probs are precomputed into it first (Ray Data stage).

    ray job submit --working-dir . -- python -m jobs.dpo --config configs/dpo/smollm2_hh_lora.yaml
"""

from __future__ import annotations

import argparse
import json
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="DPO YAML")
    parser.add_argument("overrides", nargs="*", help="dotted key=value overrides")
    args = parser.parse_args(argv)

    from app.config.dpo import DPOConfig
    from app.config.loader import load_config
    from app.launch.preference import fit_preference

    cfg = load_config(args.config, DPOConfig, args.overrides)
    summary = fit_preference("dpo", cfg)
    print(json.dumps({"run_name": summary["run_name"], "output_dir": summary["output_dir"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
