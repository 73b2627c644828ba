"""Directory resolver (tenant scoping, symlink promotion, escape guard), lineage check, remote materialization."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.serve.adapter_store import check_base, materialize, read_lineage
from app.serve.errors import Conflict, NotFound
from app.serve.resolver import DirectoryResolver


def fake_adapter(folder: Path, base_sha: str = "b" * 64, weights: bytes = b"w1") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "adapter_config.json").write_text(json.dumps({"r": 4}))
    (folder / "adapter_model.safetensors").write_bytes(weights)
    (folder / "rayalign_lineage.json").write_text(json.dumps({"base_sha": base_sha}))
    return folder


def test_tenant_scoping_and_listing(tmp_path):
    fake_adapter(tmp_path / "acme" / "alpha")
    fake_adapter(tmp_path / "globex" / "gamma")
    (tmp_path / "acme" / "not-an-adapter").mkdir()
    r = DirectoryResolver(tmp_path)
    assert r.list_names("acme") == ["alpha"] and r.list_names("nobody") == []
    assert r.resolve("acme", "alpha").uri == str((tmp_path / "acme" / "alpha").resolve())
    assert r.resolve("acme", "gamma") is None and r.resolve("globex", "alpha") is None


def test_symlink_repoint_changes_version_and_escape_is_refused(tmp_path):
    v1, v2 = fake_adapter(tmp_path / "acme" / "v" / "1"), fake_adapter(tmp_path / "acme" / "v" / "2", weights=b"w2")
    link = tmp_path / "acme" / "prod"
    link.symlink_to(v1)
    r = DirectoryResolver(tmp_path)
    first = r.resolve("acme", "prod")
    link.unlink()
    link.symlink_to(v2)
    second = r.resolve("acme", "prod")
    assert first.version != second.version and first.key != second.key and second.uri == str(v2)
    outside = fake_adapter(tmp_path.parent / f"{tmp_path.name}-outside")
    (tmp_path / "acme" / "sneaky").symlink_to(outside)
    assert r.resolve("acme", "sneaky") is None


def test_lineage_check_refuses_other_base(tmp_path):
    folder = fake_adapter(tmp_path / "a", base_sha="c" * 64)
    lineage = read_lineage(str(folder))
    check_base(lineage, "c" * 64, "a")
    with pytest.raises(Conflict, match="trained on base"):
        check_base(lineage, "d" * 64, "a")
    with pytest.raises(NotFound):
        read_lineage(str(tmp_path / "missing"))


def test_remote_uri_is_materialized_once(tmp_path):
    import fsspec

    fs = fsspec.filesystem("memory")
    for name, body in {"adapter_config.json": b'{"r": 4}', "adapter_model.safetensors": b"w", "rayalign_lineage.json": b'{"base_sha": "x"}'}.items():
        fs.pipe(f"/bucket/acme/alpha/{name}", body)
    uri = "memory://bucket/acme/alpha"
    assert read_lineage(uri) == {"base_sha": "x"}
    local = materialize(uri, tmp_path)
    assert (local / "adapter_model.safetensors").read_bytes() == b"w"
    fs.rm("/bucket/acme/alpha", recursive=True)
    assert materialize(uri, tmp_path) == local  # cached: no second download
    with pytest.raises(NotFound):
        materialize("memory://bucket/acme/ghost", tmp_path)
    with pytest.raises(NotFound):
        materialize(str(tmp_path / "nothing-here"), tmp_path)
