"""Ray job: deploy the multi-LoRA OpenAI-compatible endpoint on the cluster and keep it up.

    ray job submit --working-dir . -- python -m jobs.serve --config configs/serve/smollm2_vllm.yaml

Extra ``key=value`` arguments override the YAML (e.g. ``engine=hf ray.address=auto``). For a long-lived service
prefer `serve deploy` with the file from ``rayalign serve --config … --deploy-config serve_deploy.yaml``.
"""

from __future__ import annotations

import sys

from jobs.entry import join_submitting_cluster, run_job


def serve(args) -> int:
    from app.config.loader import load_config
    from app.config.serve import ServeConfig
    from app.serve.app import run_app

    cfg = load_config(args.config, ServeConfig, args.overrides)
    join_submitting_cluster(cfg)
    run_app(cfg, blocking=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_job("jobs.serve", __doc__, serve, argv)


if __name__ == "__main__":
    sys.exit(main())
