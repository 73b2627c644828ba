"""`rayalign reward --config configs/reward/….yaml [key=value …]`: train a Bradley–Terry reward model on Ray Train."""

from __future__ import annotations

import argparse
import json

from app.commands import say

HELP = "train a reward model (base + scalar head, LoRA or full) on a preference artifact; prints held-out accuracy"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="reward YAML (configs/reward/… or configs/tiny/reward_…)")
    p.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. optim.lr=1e-4 lora.r=16")


def run(args: argparse.Namespace) -> int:
    from app.config.loader import load_config
    from app.config.reward import RewardConfig
    from app.launch.preference import fit_preference

    cfg = load_config(args.config, RewardConfig, args.overrides)
    say(args, json.dumps(summarize(fit_preference("reward", cfg)), indent=2))
    return 0


def summarize(summary: dict) -> dict:
    """The run name, output folder and the before/after held-out numbers (the rest is in MLflow)."""
    keep = ("eval_before/accuracy", "eval/accuracy", "eval_before/margin", "eval/margin", "eval_before/loss", "eval/loss", "eval/pairs", "step")
    return {"run_name": summary["run_name"], "output_dir": summary["output_dir"], **{k: summary["metrics"].get(k) for k in keep}}
