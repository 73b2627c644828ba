"""`rayalign ppo --config FILE [key=value ...]`: run or resume PPO / GRPO / RLOO on a Ray actor group."""

from __future__ import annotations

import argparse

from app.commands import say

HELP = "RL fine-tuning (PPO with a critic, or critic-free GRPO/RLOO) of a LoRA policy on a Ray actor group"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="a YAML under configs/ppo/ or configs/tiny/ppo_*.yaml")
    p.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. run.iterations=5 algo.estimator=grpo")


def run(args: argparse.Namespace) -> int:
    from app.config.loader import load_config
    from app.config.ppo import PPOConfig
    from app.ppo.runner import run_ppo

    cfg = load_config(args.config, PPOConfig, args.overrides)
    run_dir, history = run_ppo(cfg)
    last = history[-1] if history else {}
    say(args, f"run: {run_dir}\nadapter: {run_dir / 'adapter'}\nplot: {run_dir / 'ppo_curves.png'}")
    if last:
        say(args, f"final reward_mean {last['reward_mean']:.3f}  kl {last['kl']:.3f}  iterations {last['iteration']}")
    return 0
