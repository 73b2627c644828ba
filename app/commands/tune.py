"""`rayalign tune --config configs/sweep/….yaml [key=value …]`: Ray Tune sweep over a reward/DPO config."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from app.commands import say

HELP = "sweep dotted config keys of a reward/DPO job with Ray Tune (grid/random/optuna, ASHA); keeps the best adapter"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="sweep YAML (configs/sweep/… or configs/tiny/sweep_…)")
    p.add_argument("overrides", nargs="*", help="dotted key=value overrides of the SWEEP config, e.g. max_concurrent_trials=1")


def run(args: argparse.Namespace) -> int:
    from app.launch.tune import load_sweep, run_sweep

    summary = run_sweep(load_sweep(args.config, args.overrides))
    say(args, json.dumps(summary, indent=2))
    say(args, (Path(summary["output_dir"]) / "results.md").read_text(encoding="utf-8"))
    return 0
