"""Ray job: ingest raw files into a dataset artifact (read → validate → dedup → contamination → tokenize → pack).

    ray job submit --working-dir . -- python -m jobs.ingest --config configs/ingest/smollm2_gsm8k_sft.yaml

Extra ``key=value`` arguments override config keys (``max_length=1024 dedup.threshold=0.9``). Prints the artifact
id and path as the last line (JSON).
"""

from __future__ import annotations

import json
import sys

from jobs.entry import join_submitting_cluster, run_job


def ingest(args) -> int:
    from app.config.ingest import IngestConfig
    from app.config.loader import load_config
    from app.data.pipeline import run_ingest
    from app.launch.runtime import init_ray

    cfg = load_config(args.config, IngestConfig, args.overrides)
    join_submitting_cluster(cfg)
    init_ray(cfg.ray)
    artifact = run_ingest(cfg, out_dir=args.out)
    print(json.dumps({"id": artifact.id, "path": str(artifact.path), "splits": artifact.splits}))
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_job("jobs.ingest", __doc__, ingest, argv,
                   add_arguments=lambda p: p.add_argument("--out", default=None, help="parent folder of the artifact"))


if __name__ == "__main__":
    sys.exit(main())
