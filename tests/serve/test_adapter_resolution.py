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
    original = type(fs).get_file
    type(fs).get_file = lambda *a, **k: pytest.fail("downloaded twice")
    try:
        assert materialize(uri, tmp_path) == local  # cached: listed (content stamps), not downloaded again
    finally:
        type(fs).get_file = original
    with pytest.raises(NotFound):
        materialize("memory://bucket/acme/ghost", tmp_path)
    with pytest.raises(NotFound):
        materialize(str(tmp_path / "nothing-here"), tmp_path)


def test_symlink_into_another_tenants_folder_is_refused(tmp_path):
    fake_adapter(tmp_path / "acme" / "alpha")
    (tmp_path / "globex").mkdir()
    (tmp_path / "globex" / "steal").symlink_to(tmp_path / "acme" / "alpha")
    (tmp_path / "globex" / "mine").symlink_to(fake_adapter(tmp_path / "globex" / "versions" / "v1"))
    r = DirectoryResolver(tmp_path)
    assert r.resolve("globex", "steal") is None and "steal" not in r.list_names("globex")
    assert r.resolve("globex", "mine") is not None  # a link inside the tenant's own folder still works
    (tmp_path / "initech").symlink_to(tmp_path / "acme")  # a whole tenant folder aliasing another's
    assert r.resolve("initech", "alpha") is None


def test_adapter_errors_name_the_adapter_not_the_server_path(tmp_path):
    folder = tmp_path / "acme" / "nolineage"
    folder.mkdir(parents=True)
    for call in (lambda: read_lineage(str(folder)), lambda: materialize(str(folder), tmp_path / "cache")):
        with pytest.raises(NotFound) as err:
            call()
        message = err.value.body()["error"]["message"]
        assert str(tmp_path) not in message and "/acme/" not in message, message


def _local_remote_adapter(folder: Path, weights: bytes) -> str:
    """An adapter behind fsspec's 'local://' protocol: fetched through fsspec like s3://, thread-safe unlike memory://."""
    fake_adapter(folder, weights=weights)
    return f"local://{folder}"


def _memory_adapter(prefix: str, weights: bytes) -> str:
    import fsspec

    fs = fsspec.filesystem("memory")
    for name, body in {"adapter_config.json": b'{"r": 4}', "adapter_model.safetensors": weights}.items():
        fs.pipe(f"{prefix}/{name}", body)
    return f"memory:/{prefix}"


def test_reuploaded_adapter_at_the_same_uri_is_downloaded_again(tmp_path):
    uri = _memory_adapter("/bucket2/acme/alpha", b"version-one")
    first = materialize(uri, tmp_path)
    uri = _memory_adapter("/bucket2/acme/alpha", b"version-two!")  # same URI, new content
    second = materialize(uri, tmp_path)
    assert (second / "adapter_model.safetensors").read_bytes() == b"version-two!"
    assert (first / "adapter_model.safetensors").read_bytes() == b"version-one"


def test_replicas_downloading_one_adapter_at_once_each_get_a_complete_copy(tmp_path):
    """Several replicas on one node share the cache folder: each downloads into its own temp dir, one rename wins."""
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    from fsspec.implementations.local import LocalFileSystem

    uri = _local_remote_adapter(tmp_path / "bucket" / "alpha", b"w" * 1000)
    cache = tmp_path / "cache"
    barrier = threading.Barrier(4)
    original = LocalFileSystem.get_file

    def slow_get_file(self, rpath, lpath, **kw):
        time.sleep(0.05)
        return original(self, rpath, lpath, **kw)

    def fetch(_):
        barrier.wait()
        return materialize(uri, cache)

    LocalFileSystem.get_file = slow_get_file
    try:
        with ThreadPoolExecutor(4) as pool:
            paths = list(pool.map(fetch, range(4)))
    finally:
        LocalFileSystem.get_file = original
    assert len(set(paths)) == 1 and (paths[0] / "adapter_model.safetensors").read_bytes() == b"w" * 1000
    assert [p.name for p in cache.iterdir()] == [paths[0].name]  # no temp folders left behind


def test_slow_adapter_download_times_out(tmp_path):
    import asyncio
    import time

    from fsspec.implementations.local import LocalFileSystem

    from app.serve.adapter_store import materialize_async
    from app.serve.errors import EngineUnavailable

    uri = _local_remote_adapter(tmp_path / "bucket" / "slow", b"w")
    cache = tmp_path / "cache"
    original = LocalFileSystem.get_file

    def stuck(self, rpath, lpath, **kw):
        time.sleep(1.0)
        return original(self, rpath, lpath, **kw)

    async def timed():
        t0 = time.perf_counter()
        with pytest.raises(EngineUnavailable, match="within 0.2s"):
            await materialize_async(uri, cache, label="acme/slow", timeout_s=0.2)
        return time.perf_counter() - t0

    LocalFileSystem.get_file = stuck
    try:
        assert asyncio.run(timed()) < 0.9  # asyncio.run itself then waits for the abandoned thread to stop
    finally:
        LocalFileSystem.get_file = original
    assert not any(cache.iterdir())  # it stopped at the next file and removed its partial copy
