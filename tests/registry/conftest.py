"""Registry fixtures: a real SQLite file and a real throwaway PostgreSQL 15 (initdb into a tmp dir, free port)."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest

PG_BIN = Path(os.environ.get("RAYALIGN_PG_BIN", "/usr/lib/postgresql/15/bin"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory):
    """A private PostgreSQL server for the session; yields a base URL without database name."""
    if not (PG_BIN / "initdb").is_file():
        pytest.skip(f"PostgreSQL binaries not found in {PG_BIN} (apt-get install postgresql-15)")
    pytest.importorskip("psycopg", reason="psycopg (dev extra) is needed to talk to PostgreSQL")
    root = tmp_path_factory.mktemp("pg")
    data = root / "data"
    user = None
    if os.geteuid() == 0:  # initdb refuses to run as root: run the server as an unprivileged system user
        for candidate in ("postgres", "nobody"):
            try:
                pwd.getpwnam(candidate)
                user = candidate
                break
            except KeyError:
                continue
        if user is None:
            pytest.skip("running as root and no unprivileged user (postgres/nobody) to run PostgreSQL as")
        shutil.chown(root, user=user)
        os.chmod(root, 0o755)
        for parent in root.parents:  # the server user must be able to reach its data dir
            if parent == Path("/"):
                break
            os.chmod(parent, os.stat(parent).st_mode | 0o011)
    prefix = ["runuser", "-u", user, "--"] if user else []
    port = _free_port()
    subprocess.run(prefix + [str(PG_BIN / "initdb"), "-D", str(data), "-U", "rayalign", "--auth=trust", "-E", "UTF8"],
                   check=True, capture_output=True)
    log = root / "server.log"
    subprocess.run(prefix + [str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60", "-o",
                             f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off", "start"],
                   check=True, capture_output=True)
    try:
        yield f"postgresql+psycopg://rayalign@127.0.0.1:{port}"
    finally:
        subprocess.run(prefix + [str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True)


def _fresh_pg_database(base_url: str) -> str:
    import psycopg

    name = "reg_" + uuid.uuid4().hex[:10]
    host_port = base_url.split("@", 1)[1]
    host, port = host_port.split(":")
    with psycopg.connect(host=host, port=int(port), user="rayalign", dbname="postgres", autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return f"{base_url}/{name}"


@pytest.fixture(params=["sqlite", "postgresql"])
def registry_url(request, tmp_path) -> str:
    """A brand-new empty registry database, once on a real SQLite file and once on a real PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'registry.db'}"
    server = request.getfixturevalue("postgres_server")
    return _fresh_pg_database(server)


@pytest.fixture
def make_adapter(tmp_path):
    """Factory: ``make_adapter("name", base_sha=..., ...)`` writes an adapter folder and returns its path."""

    def make(label: str, **kw) -> Path:
        return write_artifact(tmp_path / "adapters" / label, **kw)

    return make


def write_artifact(folder: Path, *, base_sha: str = "a" * 64, dataset_id: str = "ds-1", method: str = "sft",
                   config_hash: str = "c" * 64, r: int = 8, source: str = "bundled:smollm2-135m-instruct") -> Path:
    """A minimal peft-layout adapter folder with its lineage file (no weights needed for registry tests)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": r, "lora_alpha": 2 * r}))
    (folder / "adapter_model.safetensors").write_bytes(b"\0" * 16)
    (folder / "rayalign_lineage.json").write_text(json.dumps({
        "base_model_source": source, "base_sha": base_sha, "dataset_id": dataset_id, "config_hash": config_hash,
        "method": method, "lora": {"r": r, "alpha": 2 * r, "target_modules": ["q_proj", "v_proj"]},
        "metrics": {"train_loss": 1.25}, "created_at": "2026-11-23T11:00:00Z"}))
    return folder

