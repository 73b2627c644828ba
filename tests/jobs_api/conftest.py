"""Job-API fixtures: the real app on a real uvicorn server on 127.0.0.1 (no TestClient), and two tenants' keys."""

from __future__ import annotations

import hashlib
import socket
import threading
import time

import httpx
import pytest

KEY_A = "tenant-a-key-0123456789"
KEY_B = "tenant-b-key-0123456789"
TENANTS = [{"name": "alpha", "api_key_sha256": [hashlib.sha256(KEY_A.encode()).hexdigest()]},
           {"name": "beta", "api_key_sha256": [hashlib.sha256(KEY_B.encode()).hexdigest()]}]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """A uvicorn server in a thread, stopped at teardown."""

    def __init__(self, app):
        import uvicorn

        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.time() + 20
        while not self.server.started:
            assert time.time() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture
def api_cfg(tmp_path):
    return {"tenants": TENANTS, "db_url": f"sqlite:///{tmp_path / 'registry.db'}", "files_dir": str(tmp_path / "files"),
            "max_upload_mb": 0.05, "max_body_kb": 8}


@pytest.fixture
def api(api_cfg):
    """(base_url, clients for tenant A and B, the app) with the scheduler off: HTTP behaviour only."""
    from app.jobs_api.app import build_app

    app = build_app(api_cfg, run_scheduler=False)
    with LiveServer(app) as url:
        a = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {KEY_A}"}, timeout=30)
        b = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {KEY_B}"}, timeout=30)
        yield url, a, b, app
        a.close()
        b.close()


def gsm8k_lines(n: int = 20) -> bytes:
    import json

    rows = [{"question": f"What is {i} + {i}?", "answer": f"{i} + {i} = {2 * i}\n#### {2 * i}"} for i in range(n)]
    return "".join(json.dumps(r) + "\n" for r in rows).encode()
