"""Local services the serve benchmarks start on 127.0.0.1: a free TCP port, Ray Serve's HTTP proxy on one, and a
moto S3 server for adapters in an object store (imported by the scripts next to it; benchmarks/ is their folder)."""

from __future__ import annotations

import logging
import os
import socket


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_serve_http() -> str:
    """Start Ray Serve's HTTP proxy on a free 127.0.0.1 port (Ray already initialised); returns its base URL."""
    from ray import serve

    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    return f"http://127.0.0.1:{port}"


def start_moto_s3(bucket: str) -> tuple[object, str]:
    """A moto S3 server on 127.0.0.1 with ``bucket`` created: (server, endpoint URL). The endpoint and fake
    credentials go into this process's environment, where boto3 / pyarrow find them; Ray workers inherit the driver's
    environment through the local raylet, so call this before ``ray.init``. ray.serve.llm's downloader reads
    ``AWS_ENDPOINT_URL_S3``, the rest ``AWS_ENDPOINT_URL``: both are set."""
    import boto3
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # else one access-log line per S3 call, printed by the driver
    endpoint = f"http://127.0.0.1:{port}"
    os.environ.update({"AWS_ENDPOINT_URL": endpoint, "AWS_ENDPOINT_URL_S3": endpoint, "AWS_ACCESS_KEY_ID": "testing",
                       "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"})
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
    return server, endpoint
