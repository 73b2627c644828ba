"""Ray job: ingest raw files into a dataset artifact (read → validate → dedup → contamination → tokenize → pack).

    ray job submit --working-dir . -- python -m jobs.ingest --config configs/ingest/smollm2_gsm8k_sft.yaml

Extra ``key=value`` arguments override config keys (``max_length=1024 dedup.threshold=0.9``). Prints the artifact
id and path as the last line (JSON).
"""

from __future__ import annotations

import argparse
import json
import sys

from app.config.ingest import IngestConfig
from app.config.loader import load_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="jobs.ingest", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--out", default=None, help="parent folder of the artifact")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv)
    cfg = load_config(args.config, IngestConfig, args.overrides)

    from app.data.pipeline import run_ingest
    from app.launch.runtime import init_ray

    init_ray(cfg.ray)
    artifact = run_ingest(cfg, out_dir=args.out)
    print(json.dumps({"id": artifact.id, "path": str(artifact.path), "splits": artifact.splits}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
