"""`rayalign jobs api|submit|status|cancel|list|upload|file`: run the fine-tuning job API, or talk to it.

    rayalign jobs api --address local                     # API on Ray Serve at http://127.0.0.1:8000 (+ dashboard)
    export RAYALIGN_API_URL=http://127.0.0.1:8000 RAYALIGN_API_KEY=...
    rayalign jobs submit --file train.jsonl --base-model bundled:smollm2-135m-instruct --method lora max_steps=50
    rayalign jobs status ftjob-…   |   rayalign jobs cancel ftjob-…   |   rayalign jobs list
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from app.config.errors import ConfigError

HELP = "fine-tuning job API: serve it (api) or use it (submit, status, cancel, list, upload, file)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", default=os.environ.get("RAYALIGN_API_URL", "http://127.0.0.1:8000"), help="API base URL")
    sub = p.add_subparsers(dest="action", metavar="<action>", required=True)
    api = sub.add_parser("api", help="start the job API on Ray Serve (blocks with --address local)")
    api.add_argument("--address", default="local", help="'local' (new cluster, blocks), 'auto' or ray://… (deploy, exit)")
    api.add_argument("--dashboard-port", type=int, default=8265, help="dashboard port of a local cluster")
    api.add_argument("overrides", nargs="*", help="JobsAPIConfig key=value overrides, e.g. port=8100 max_upload_mb=16")
    up = sub.add_parser("upload", help="upload a JSONL/Parquet file, print its file id")
    up.add_argument("file")
    sm = sub.add_parser("submit", help="submit a job (uploads --file first)")
    src = sm.add_mutually_exclusive_group(required=True)
    src.add_argument("--file", help="local JSONL/Parquet to upload and train on")
    src.add_argument("--training-file", help="id of an uploaded file")
    sm.add_argument("--base-model", default="bundled:smollm2-135m-instruct")
    sm.add_argument("--method", default="lora")
    sm.add_argument("--idempotency-key", default=None, help="repeat-safe key: the same key returns the first job")
    sm.add_argument("hyperparameters", nargs="*", help="key=value, e.g. max_steps=50 learning_rate=1e-4")
    for name in ("status", "cancel", "events"):
        sub.add_parser(name, help=f"{name} of a job").add_argument("job_id")
    sub.add_parser("list", help="your jobs")
    sub.add_parser("file", help="an uploaded file: ingestion status and dataset id").add_argument("file_id")


def _client(args):
    import httpx

    key = os.environ.get("RAYALIGN_API_KEY")
    if not key:
        raise ConfigError("set RAYALIGN_API_KEY to your API key")
    return httpx.Client(base_url=args.url, headers={"Authorization": f"Bearer {key}"}, timeout=60)


def _show(response) -> int:
    body = response.json() if response.headers.get("content-type", "").startswith("application/json") else response.text
    print(json.dumps(body, indent=2) if not isinstance(body, str) else body)
    return 0 if response.status_code < 400 else 1


def _upload(client, path: str):
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no such file: {p}")
    with p.open("rb") as fh:
        return client.post("/v1/files", params={"filename": p.name}, content=fh)


def run(args: argparse.Namespace) -> int:
    if args.action == "api":
        return _serve_api(args)
    from app.config.loader import parse_overrides

    with _client(args) as client:
        if args.action == "upload":
            return _show(_upload(client, args.file))
        if args.action == "file":
            return _show(client.get(f"/v1/files/{args.file_id}"))
        if args.action == "submit":
            file_id = args.training_file
            if args.file:
                r = _upload(client, args.file)
                if r.status_code >= 400:
                    return _show(r)
                file_id = r.json()["id"]
            body = {"base_model": args.base_model, "training_file": file_id, "method": args.method,
                    "hyperparameters": parse_overrides(args.hyperparameters)}
            headers = {"Idempotency-Key": args.idempotency_key} if args.idempotency_key else {}
            return _show(client.post("/v1/fine-tuning/jobs", json=body, headers=headers))
        if args.action == "list":
            return _show(client.get("/v1/fine-tuning/jobs"))
        suffix = {"status": "", "cancel": "/cancel", "events": "/events"}[args.action]
        method = client.post if args.action == "cancel" else client.get
        return _show(method(f"/v1/fine-tuning/jobs/{args.job_id}{suffix}"))


def _serve_api(args) -> int:
    from app.config.common import RaySpec
    from app.config.loader import load_config
    from app.config.pipeline import JobsAPIConfig
    from app.jobs_api.app import run_on_serve
    from app.launch.runtime import init_ray

    local = args.address == "local"
    extra = [f"dashboard_address=http://127.0.0.1:{args.dashboard_port}"] if local else []
    cfg = load_config(None, JobsAPIConfig, [*extra, *args.overrides])
    init_ray(RaySpec(address=args.address), **({"include_dashboard": True, "dashboard_port": args.dashboard_port}
                                                if local else {}))
    print(f"job API: http://{cfg.host}:{cfg.port}{cfg.route_prefix}  (Ray dashboard: {cfg.dashboard_address})",
          file=sys.stderr)
    run_on_serve(cfg, blocking=local)
    return 0
