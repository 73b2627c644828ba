"""`rayalign eval --config FILE [key=value …]`: run the eval gates on an adapter, record the decision, write the report."""

from __future__ import annotations

import argparse

from app.commands import say

HELP = "run the eval gates (perplexity, GSM8K, benchmark regression, safety, pairwise judge) on an adapter"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="EvalConfig YAML, e.g. configs/eval/smollm2_gates.yaml")
    p.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. adapter=/path registry.name=math")


def run(args: argparse.Namespace) -> int:
    from app.config.eval import EvalConfig
    from app.config.loader import load_config
    from app.eval.runner import run_eval

    result = run_eval(load_config(args.config, EvalConfig, args.overrides))
    d = result.decision
    say(args, ("PASSED: " if d.passed else "BLOCKED: ") + d.reason)
    for o in d.outcomes:
        say(args, f"  {o.name:<11} {o.status:<10} {o.reason}")
    say(args, f"report: {result.report_md}  ({result.report_png.name})")
    if result.artifact_ref:
        say(args, f"recorded on {result.artifact_ref}")
    return 0 if d.passed else 1
