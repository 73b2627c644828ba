"""`rayalign pipeline --config FILE [key=value ...]`: raw data to a served, gated adapter in one command."""

from __future__ import annotations

import argparse

from app.config.loader import load_config
from app.config.pipeline import PipelineConfig

HELP = "run ingest -> SFT LoRA -> [DPO|PPO] -> eval gates -> register -> promote -> serve -> sample request"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default="configs/pipeline/demo.yaml", help="pipeline YAML (default: the demo)")
    p.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. preference.enabled=true")


def run(args: argparse.Namespace) -> int:
    from app.pipeline.run import run_pipeline, summary_lines

    cfg = load_config(args.config, PipelineConfig, args.overrides)
    result = run_pipeline(cfg)
    print("\n" + "\n".join(summary_lines(result)))  # own line: Ray's progress bars leave the cursor mid-line
    return 0 if result.ok else 1
