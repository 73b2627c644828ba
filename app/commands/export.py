"""`rayalign export --merge ADAPTER --out DIR`: merge a LoRA adapter into its base (checked equal to unmerged)."""

from __future__ import annotations

import argparse

HELP = "merge a LoRA adapter into its base model for full-model serving (verifies merged == unmerged outputs)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("adapter", help="adapter folder (peft layout + rayalign_lineage.json)")
    p.add_argument("--merge", action="store_true", required=True, help="merge the adapter weights into the base")
    p.add_argument("--out", required=True, help="output folder for the merged HF model")
    p.add_argument("--base", default=None, help="base model source (default: from the adapter's lineage)")


def run(args: argparse.Namespace) -> int:
    from app.models.export import merge_adapter

    report = merge_adapter(args.adapter, args.out, base_source=args.base)
    print(f"merged model: {report['out_dir']}  max |merged - unmerged| logits = {report['max_abs_diff']:.2e}")
    if not report["equal"]:
        print("merged outputs differ from the unmerged adapter beyond tolerance")
        return 1
    return 0
