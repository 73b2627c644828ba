"""`rayalign dpo --config configs/dpo/….yaml [key=value …]`: DPO/IPO with reference log-probs precomputed once."""

from __future__ import annotations

import argparse
import json

from app.commands import say

HELP = "DPO/IPO-train a LoRA policy (reference log-probs precomputed into the artifact first); prints held-out accuracy and margin"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="DPO YAML (configs/dpo/… or configs/tiny/dpo_…)")
    p.add_argument("--precompute-only", action="store_true", help="only add the reference log-prob columns to the artifact")
    p.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. dpo.beta=0.2 optim.lr=1e-5")


def run(args: argparse.Namespace) -> int:
    from app.commands.reward import summarize
    from app.config.dpo import DPOConfig
    from app.config.loader import load_config
    from app.launch.preference import ensure_reference_logprobs, fit_preference
    from app.launch.runtime import init_ray

    cfg = load_config(args.config, DPOConfig, args.overrides)
    if args.precompute_only:
        init_ray(cfg.ray)
        say(args, json.dumps(ensure_reference_logprobs(cfg), indent=2))
        return 0
    say(args, json.dumps(summarize(fit_preference("dpo", cfg)), indent=2))
    return 0
