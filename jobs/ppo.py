"""Ray job entrypoint for PPO / GRPO / RLOO: parse -> validate -> run the actor-group driver.

    ray job submit --working-dir . -- python -m jobs.ppo --config configs/ppo/smollm2_gsm8k_cpu.yaml run.iterations=20
"""

from __future__ import annotations

import sys

from jobs.entry import join_submitting_cluster, run_job


def ppo(args) -> int:
    from app.config.loader import load_config
    from app.config.ppo import PPOConfig
    from app.ppo.launch import run_ppo

    cfg = load_config(args.config, PPOConfig, args.overrides)
    join_submitting_cluster(cfg)
    run_dir, history = run_ppo(cfg)
    print(f"run: {run_dir}  iterations: {len(history)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_job("jobs.ppo", __doc__, ppo, argv)


if __name__ == "__main__":
    sys.exit(main())
