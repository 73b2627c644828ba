"""`rayalign train --config configs/sft/….yaml [key=value …]`: SFT / CPT (full, LoRA, QLoRA) on Ray Train."""

from __future__ import annotations

import argparse

from app.commands import say

HELP = "fine-tune (SFT/CPT; full, LoRA, QLoRA; DDP/FSDP2/ZeRO) on Ray Train; re-run the same config to resume"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="SFT config YAML (configs/sft/… or configs/tiny/sft_…)")
    p.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. train.max_steps=20 lora.r=16")


def run(args: argparse.Namespace) -> int:
    from app.config.loader import load_config
    from app.config.sft import SFTConfig
    from app.launch.run import TrainingFailed, run_sft

    cfg = load_config(args.config, SFTConfig, args.overrides)
    try:
        outcome = run_sft(cfg)
    except TrainingFailed as exc:
        say(args, f"rayalign train: failed: {exc}")
        return 1
    last = outcome.history[-1] if outcome.history else {}
    say(args, f"run {outcome.run_name}: {outcome.status} at step {outcome.step}"
              + (f" (resumed from {outcome.resumed_from})" if outcome.resumed_from else "")
              + (f", loss {last['loss']:.4f}" if last else ""))
    if outcome.output_dir:
        say(args, f"output: {outcome.output_dir}")
    if outcome.status == "preempted":
        say(args, "preempted: checkpoint saved; run the same command again to resume")
        return 3
    return 0
