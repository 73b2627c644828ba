"""`rayalign mlflow-ui`: serve the MLflow UI for the local tracking store on 127.0.0.1."""

from __future__ import annotations

import argparse

from app.tracking.mlflow_store import serve_ui

HELP = "start the MLflow UI on 127.0.0.1 for the local SQLite tracking store"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--port", type=int, default=5000)
    p.add_argument("--tracking-uri", default=None, help="another tracking URI (default: the local SQLite store)")


def run(args: argparse.Namespace) -> int:
    from app.config.common import TrackingSpec

    return serve_ui(port=args.port, spec=TrackingSpec(mlflow_uri=args.tracking_uri))
