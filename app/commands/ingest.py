"""`rayalign ingest --config configs/ingest/….yaml [key=value …]`: raw files → dataset artifact."""

from __future__ import annotations

import argparse
import json

from app.commands import say

HELP = "validate, dedup, contamination-check, tokenize and pack raw files into a versioned dataset artifact"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="ingest YAML (configs/ingest/… or configs/tiny/ingest_…)")
    p.add_argument("--out", default=None, help="parent folder of the artifact (default: output_dir in the config)")
    p.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. max_length=1024 dedup.threshold=0.9")


def run(args: argparse.Namespace) -> int:
    from app.config.ingest import IngestConfig
    from app.config.loader import load_config
    from app.data.pipeline import run_ingest
    from app.launch.runtime import init_ray

    cfg = load_config(args.config, IngestConfig, args.overrides)
    init_ray(cfg.ray)
    artifact = run_ingest(cfg, out_dir=args.out)
    m = artifact.manifest
    keys = ("rows_read", "rows_accepted", "rows_rejected", "exact_dups_removed", "near_dups_removed",
            "contaminated_flagged", "contaminated_dropped", "rows_kept", "tokens", "packing_efficiency", "padded_efficiency", "splits")
    say(args, json.dumps({"id": artifact.id, "path": str(artifact.path), **{k: m.get(k) for k in keys}}, indent=2))
    return 0
