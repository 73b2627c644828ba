"""Dataset artifacts are immutable versions: a changed re-ingest adds v<N+1>, the old one stays and loads; the same
content is never rewritten; a registry entry made for an old version keeps resolving (no Ray: write_artifact only)."""

from __future__ import annotations

import pytest

from app.data.artifact import list_versions, load_artifact, write_artifact
from app.data.errors import DataError


def _rows(n: int, offset: int = 0) -> list[dict]:
    return [{"input_ids": [offset + i, 2, 3], "labels": [-100, 2, 3], "position_ids": [0, 1, 2], "seq_len": 3}
            for i in range(n)]


def _write(name_dir, rows, max_length=128):
    return write_artifact(name_dir, "sft", {"train": rows}, {"model_source": "tiny:llama", "max_length": max_length})


def test_changed_setting_adds_a_version_and_keeps_the_old_one(tmp_path):
    name = tmp_path / "gsm8k"
    v1 = _write(name, _rows(4))
    assert v1.path == (name / "v1").resolve() and v1.manifest["version"] == 1
    mtime = (v1.path / "manifest.json").stat().st_mtime_ns

    same = _write(name, _rows(4))  # same input + settings: same id, nothing rewritten, no new version
    assert same.id == v1.id and same.path == v1.path
    assert (v1.path / "manifest.json").stat().st_mtime_ns == mtime and len(list_versions(name)) == 1

    v2 = _write(name, _rows(4), max_length=256)  # a changed setting: a new version beside the old one
    v3 = _write(name, _rows(5, offset=7))  # other input: another one
    assert [p.name for p in list_versions(name)] == ["v1", "v2", "v3"]
    assert len({v1.id, v2.id, v3.id}) == 3 and v3.manifest["version"] == 3
    assert load_artifact(name).id == v3.id  # the name resolves to the newest version
    old = load_artifact(name / "v1")  # the old version is still on disk and loads, rows intact
    assert old.id == v1.id and old.read_table().num_rows == 4
    assert load_artifact(f"{name}@{v2.id}").path == v2.path
    assert not [p for p in name.iterdir() if p.name.startswith(".tmp")]  # no temporary folder left behind
    with pytest.raises(DataError, match="no version with id 'sft-nope'"):
        load_artifact(f"{name}@sft-nope")


def test_registry_lineage_resolves_after_a_new_version(tmp_path):
    from app.registry import Registry

    name = tmp_path / "ds"
    v1 = _write(name, _rows(3))
    reg = Registry(f"sqlite:///{tmp_path / 'reg.db'}")
    reg.register_dataset("acme", str(v1.path))
    _write(name, _rows(6))  # re-ingest with other input
    got = reg.get_dataset("acme", v1.id)
    reg.close()
    assert load_artifact(got["uri"]).id == v1.id and load_artifact(got["uri"]).read_table().num_rows == 3
    assert load_artifact(name).id != v1.id


def test_legacy_flat_folder_still_loads(tmp_path):
    v1 = _write(tmp_path / "x", _rows(2))
    flat = tmp_path / "flat"
    v1.path.rename(flat)  # the layout before versions: manifest.json at the top
    assert load_artifact(flat).id == v1.id
