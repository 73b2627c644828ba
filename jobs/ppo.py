"""Ray job entrypoint for PPO / GRPO / RLOO: parse -> validate -> run the actor-group driver.

    ray job submit --working-dir . -- python -m jobs.ppo --config configs/ppo/smollm2_gsm8k_cpu.yaml run.iterations=20
"""

from __future__ import annotations

import argparse
import sys

from app.config.errors import ConfigError
from app.config.loader import load_config
from app.config.ppo import PPOConfig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="jobs.ppo", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="YAML under configs/ppo/")
    parser.add_argument("overrides", nargs="*", help="dotted key=value overrides")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config, PPOConfig, args.overrides)
    except ConfigError as exc:
        print(f"jobs.ppo: error: {exc}", file=sys.stderr)
        return 2
    from app.ppo.launch import run_ppo

    run_dir, history = run_ppo(cfg)
    print(f"run: {run_dir}  iterations: {len(history)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
