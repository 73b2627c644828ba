"""One Serve adapter URI through the S3-compatible store (issue 21): a moto server on 127.0.0.1 holds an adapter
folder uploaded the way finished runs are (app.launch.storage.upload_folder); Serve's adapter store reads its lineage,
refuses it for another base, and materializes it into the replica's cache byte for byte. Before, s3:// needed s3fs
(not installed): every s3:// adapter raised ImportError, a 500."""

from __future__ import annotations

import json

import pytest

from app.launch.storage import upload_folder
from app.serve.adapter_store import LINEAGE, check_base, materialize, read_lineage
from app.serve.errors import Conflict, NotFound


@pytest.fixture()
def s3_adapter(moto_s3, tmp_path):
    folder = tmp_path / "adapter"
    folder.mkdir()
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 4}))
    (folder / "adapter_model.safetensors").write_bytes(bytes(range(256)) * 64)
    (folder / LINEAGE).write_text(json.dumps({"base_sha": "a" * 64, "name": "acme-sql"}))
    uri = upload_folder(folder, f"s3://{moto_s3['bucket']}/adapters/acme-sql/v1")
    return folder, uri


def test_serve_reads_and_materializes_an_s3_adapter(s3_adapter, tmp_path):
    folder, uri = s3_adapter
    lineage = read_lineage(uri, "acme-sql")
    assert lineage["name"] == "acme-sql"
    check_base(lineage, "a" * 64, "acme-sql")
    with pytest.raises(Conflict):
        check_base(lineage, "b" * 64, "acme-sql")
    local = materialize(uri, tmp_path / "cache", label="acme-sql")
    assert sorted(p.name for p in local.iterdir()) == sorted(p.name for p in folder.iterdir())
    for f in folder.iterdir():
        assert (local / f.name).read_bytes() == f.read_bytes()
    assert materialize(uri, tmp_path / "cache", label="acme-sql") == local  # cached: same folder, no second copy


def test_missing_s3_adapter_and_unknown_scheme_are_not_found(moto_s3, tmp_path):
    with pytest.raises(NotFound):
        materialize(f"s3://{moto_s3['bucket']}/adapters/nope/v1", tmp_path / "cache", label="nope")
    with pytest.raises(NotFound):
        read_lineage(f"s3://{moto_s3['bucket']}/adapters/nope/v1", "nope")
    with pytest.raises(NotFound, match="scheme 'nosuch://'"):
        materialize("nosuch://bucket/x", tmp_path / "cache", label="x")
