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

from tests.cluster.conftest import s3_keys


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


def test_demo_adapters_for_an_s3_root_are_uploaded_not_written_to_a_local_s3_folder(moto_s3, tmp_path, monkeypatch):
    """`rayalign serve --demo-adapters N` with adapters.root=s3://…: before, the adapters landed in a local folder
    literally named "s3:/bucket/…" under the working directory and the server found nothing in the bucket."""
    from app.models.loader import base_sha
    from app.models.tiny import build_tiny_model
    from app.serve.random_adapter import write_demo_adapters

    base = build_tiny_model(tmp_path / "base")
    monkeypatch.chdir(tmp_path)
    root = f"s3://{moto_s3['bucket']}/demo-root"
    uris = write_demo_adapters(base, root, "acme", 2)
    assert uris == [f"{root}/acme/demo-0", f"{root}/acme/demo-1"]
    assert not (tmp_path / "s3:").exists()
    keys = s3_keys(moto_s3, "demo-root/acme/")
    for i in (0, 1):
        assert {f"demo-root/acme/demo-{i}/{f}" for f in ("adapter_config.json", "adapter_model.safetensors", LINEAGE)} <= set(keys)
    check_base(read_lineage(uris[1], "demo-1"), base_sha(base), "demo-1")
    local = write_demo_adapters(base, str(tmp_path / "adapters"), "acme", 1)
    assert local == [str(tmp_path / "adapters" / "acme" / "demo-0")] and (tmp_path / "adapters/acme/demo-0" / LINEAGE).exists()
