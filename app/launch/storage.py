"""Run storage on an object store (``s3://bucket/prefix``, ``gs://…``): reach it before any training starts.

Ray Train writes checkpoints through pyarrow filesystems only when a worker first reports one, so a mistyped bucket,
a missing credential or an unreachable endpoint used to surface after the first checkpoint interval (an hour into a
spot job). ``check_storage_reachable`` writes and deletes a probe object under the URI with short timeouts and turns
any failure into one ConfigError line naming the URI. ``upload_folder`` puts a finished run's output folder (adapter
or model, loss curve) next to its checkpoints in the store.

S3-compatible stores (MinIO, moto, R2) are reached the way Ray's own pyarrow filesystem reaches them: the standard
AWS variables (``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_S3``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_DEFAULT_REGION``), set for the driver and, through it, the Ray workers of a local cluster (on a multi-node
cluster, on every node).
"""

from __future__ import annotations

import os
import uuid
from urllib.parse import urlparse

from app.config.errors import ConfigError


def _s3_filesystem(timeout_s: float, attempts: int = 1):
    from pyarrow import fs as pafs

    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    kwargs: dict = {"connect_timeout": timeout_s, "request_timeout": timeout_s,
                    "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=attempts)}
    if endpoint:
        parsed = urlparse(endpoint if "://" in endpoint else f"https://{endpoint}")
        kwargs.update(endpoint_override=parsed.netloc, scheme=parsed.scheme)
    region = os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION")
    if region:
        kwargs["region"] = region
    return pafs.S3FileSystem(**kwargs)


def object_store(uri: str, timeout_s: float = 10.0, attempts: int = 1):
    """(pyarrow filesystem, path inside it) for an object-store URI; S3 through the standard AWS variables."""
    from pyarrow import fs as pafs

    parsed = urlparse(uri)
    if parsed.scheme in ("s3", "s3a"):
        return _s3_filesystem(timeout_s, attempts), f"{parsed.netloc}{parsed.path}".rstrip("/")
    return pafs.FileSystem.from_uri(uri)


def upload_folder(folder, uri: str) -> str:
    """Copy the local ``folder`` (recursively) to the object-store ``uri``; returns ``uri``."""
    from pyarrow import fs as pafs

    filesystem, path = object_store(uri, timeout_s=60, attempts=3)
    pafs.copy_files(str(folder), path, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=filesystem)
    return uri


def check_storage_reachable(uri: str, timeout_s: float = 10.0) -> None:
    """Write and delete a probe object under ``uri``; ConfigError naming the URI when that fails. Local paths pass."""
    if "://" not in uri:
        return
    try:
        filesystem, path = object_store(uri, timeout_s)
        probe = f"{path.rstrip('/')}/.rayalign-probe-{uuid.uuid4().hex[:12]}"
        with filesystem.open_output_stream(probe) as stream:
            stream.write(b"rayalign storage probe\n")
        filesystem.delete_file(probe)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises OSError/ArrowInvalid/...; all mean "cannot store runs here"
        reason = " ".join(str(exc).split())[:300]
        raise ConfigError(f"ray.storage_path {uri} cannot be reached (checked before training): {reason}") from None
