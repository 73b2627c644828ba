"""Ray job: deploy the multi-LoRA OpenAI-compatible endpoint on the cluster and keep it up.

    ray job submit --working-dir . -- python -m jobs.serve --config configs/serve/smollm2_vllm.yaml

Extra ``key=value`` arguments override the YAML (e.g. ``engine=hf ray.address=auto``). For a long-lived service
prefer `serve deploy` with the file from ``rayalign serve --config … --deploy-config serve_deploy.yaml``.
"""

from __future__ import annotations

import argparse
import os
import sys

from app.config.loader import load_config
from app.config.serve import ServeConfig
from app.serve.app import run_app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv)
    cfg = load_config(args.config, ServeConfig, args.overrides)
    if cfg.ray.address == "local" and os.environ.get("RAY_ADDRESS"):
        cfg.ray.address = "auto"  # inside `ray job submit` the cluster already exists
    run_app(cfg, blocking=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
