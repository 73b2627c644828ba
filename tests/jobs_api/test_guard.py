"""The front door over a raw socket: a chunked 200 MB body is refused (401 / 413) after at most a few MB with flat
server memory; no /docs or /openapi.json; tenant quotas answer 429 + Retry-After; no server path in any error."""

from __future__ import annotations

import io
import json
import select
import socket
import threading
import time

import openai
import psutil
import pytest

from tests.jobs_api.conftest import KEY_A, TENANTS, LiveServer

MB = 1024 * 1024


def send_chunked(url: str, path: str, total: int, headers: dict[str, str], prefix: bytes = b"") -> tuple[int, int]:
    """POST ``total`` bytes with Transfer-Encoding: chunked (no Content-Length) until the server answers;
    returns (status, bytes sent before the answer)."""
    host, port = url.removeprefix("http://").split(":")
    s = socket.create_connection((host, int(port)), timeout=30)
    head = f"POST {path} HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    s.sendall(head.encode())
    if prefix:
        s.sendall(f"{len(prefix):x}\r\n".encode() + prefix + b"\r\n")
    chunk = b"7" * (64 * 1024)
    frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    sent = 0
    try:
        while sent < total:
            if select.select([s], [], [], 0)[0]:  # the server has answered: stop sending
                break
            s.sendall(frame)
            sent += len(chunk)
        else:
            s.sendall(b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass
    data = b""
    deadline = time.time() + 30
    while b"\r\n" not in data and time.time() < deadline:
        part = s.recv(4096)
        if not part:
            break
        data += part
    s.close()
    return int(data.split(b" ")[1]), sent


class PeakRSS:
    """Peak resident memory of this process (the server runs in it) while the block runs."""

    def __enter__(self):
        self.proc, self.base, self.peak, self.stop = psutil.Process(), psutil.Process().memory_info().rss, 0, False
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()
        return self

    def _watch(self):
        while not self.stop:
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.01)

    def __exit__(self, *exc):
        self.stop = True
        self.thread.join()
        self.growth_mb = (self.peak - self.base) / MB


@pytest.mark.parametrize("path, key, status", [
    ("/v1/fine_tuning/jobs", None, 401),
    ("/v1/fine-tuning/jobs", None, 401),  # every route: the old alias too
    ("/v1/files", None, 401),
    ("/v1/fine_tuning/jobs", KEY_A, 413),
    ("/v1/fine-tuning/jobs", KEY_A, 413),  # the pre-fix code read all 200 MB here (+590 MB RSS) and answered 400
    ("/v1/files", KEY_A, 413),
])
def test_chunked_200mb_body_is_refused_early_with_flat_memory(api, path, key, status):
    url = api[0]
    headers = {"Content-Type": "application/json" if "jobs" in path else "multipart/form-data; boundary=x"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    prefix = b'--x\r\nContent-Disposition: form-data; name="file"; filename="big.jsonl"\r\n\r\n' if "files" in path else b""
    with PeakRSS() as mem:
        got, sent = send_chunked(url, path, 200 * MB, headers, prefix)
    assert sent < 32 * MB, f"the server read {sent / MB:.0f} MB before answering {got}"
    assert mem.growth_mb < 40, f"server memory grew {mem.growth_mb:.0f} MB"
    assert got == status


def test_docs_and_openapi_are_off(api):
    url, a, _, _ = api
    import httpx

    for path in ("/docs", "/redoc", "/openapi.json"):
        assert httpx.get(url + path).status_code == 401
        r = a.get(path)
        assert r.status_code == 404 and r.json()["error"]["type"] == "invalid_request_error", r.text


def test_no_server_path_in_errors(api, api_cfg):
    url, a, _, app = api
    r = a.post("/v1/files", params={"filename": "x.parquet"}, content=b"not parquet at all")
    assert r.status_code == 400 and "/" not in r.json()["error"]["message"], r.text
    assert api_cfg["files_dir"] not in r.text
    c = openai.OpenAI(base_url=f"{url}/v1", api_key=KEY_A, max_retries=0)
    f = c.files.create(file=("t.jsonl", io.BytesIO(b'{"foo": 1}\n')), purpose="fine-tune")
    app.state.store.update_file(f.id, status="error", status_details=f"cannot read {api_cfg['files_dir']}/alpha/x: boom")
    shown = c.files.retrieve(f.id)
    assert api_cfg["files_dir"] not in json.dumps(shown.model_dump()) and "<path>" in shown.status_details


def test_tenant_over_quota_gets_429_with_retry_after(tmp_path):
    from app.jobs_api.app import build_app

    cfg = {"tenants": TENANTS, "db_url": f"sqlite:///{tmp_path / 'r.db'}", "files_dir": str(tmp_path / "files"),
           "quotas": {"alpha": {"max_queued_jobs": 1, "max_stored_mb": 0.002}}, "retry_after_s": 7}
    app = build_app(cfg, run_scheduler=False)
    rows = "".join(json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]})
                   + "\n" for _ in range(10)).encode()  # ~0.8 KB
    with LiveServer(app) as url:
        c = openai.OpenAI(base_url=f"{url}/v1", api_key=KEY_A, max_retries=0)
        f = c.files.create(file=("t.jsonl", io.BytesIO(rows)), purpose="fine-tune")
        c.fine_tuning.jobs.create(model="tiny-llama", training_file=f.id)
        with pytest.raises(openai.RateLimitError) as err:
            c.fine_tuning.jobs.create(model="tiny-llama", training_file=f.id)
        assert err.value.response.headers["retry-after"] == "7" and "quota" in err.value.body["message"]
        assert len(app.state.store.list_jobs()) == 1  # nothing queued by the refused call
        c.files.create(file=("u.jsonl", io.BytesIO(rows)), purpose="fine-tune")  # 1.6 KB of 2 KB
        with pytest.raises(openai.RateLimitError) as err:
            c.files.create(file=("v.jsonl", io.BytesIO(rows)), purpose="fine-tune")
        assert err.value.response.headers["retry-after"] == "7" and err.value.body["param"] == "file"
        assert len(c.files.list().data) == 2
