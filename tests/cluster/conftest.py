"""A local S3-compatible store (moto's server on 127.0.0.1) for checkpoints written to ``s3://`` URIs.

The AWS variables Ray's pyarrow filesystem reads are set in this process for the module's duration, so a local Ray
cluster started afterwards (its raylet and workers inherit the environment) writes to the same store.
"""

from __future__ import annotations

import os
import socket

import pytest

AWS_ENV = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def moto_s3():
    """{"endpoint", "bucket", "client"}: a running moto S3 server with one empty bucket, AWS env pointed at it."""
    boto3 = pytest.importorskip("boto3")
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    saved = {k: os.environ.get(k) for k in AWS_ENV}
    os.environ.update(AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}", AWS_ACCESS_KEY_ID="testing",
                      AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
    client = boto3.client("s3")
    client.create_bucket(Bucket="rayalign-test")
    try:
        yield {"endpoint": os.environ["AWS_ENDPOINT_URL"], "bucket": "rayalign-test", "client": client}
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def s3_keys(moto_s3, prefix: str) -> list[str]:
    pages = moto_s3["client"].get_paginator("list_objects_v2").paginate(Bucket=moto_s3["bucket"], Prefix=prefix)
    return [obj["Key"] for page in pages for obj in page.get("Contents", [])]


@pytest.fixture(scope="session")
def sft_artifact(tmp_path_factory):
    """A tiny packed SFT artifact (the data contract's columns) from app.data.synthetic, for the S3 resume test."""
    from app.data.synthetic import write_packed_artifact

    return write_packed_artifact(tmp_path_factory.mktemp("sft_artifact"))
