"""The job API over real HTTP on 127.0.0.1: auth, tenants, idempotency, 400 field errors (OpenAI's shape), 413
uploads, cancel — through rayalign's first routes (raw-body upload, /v1/fine-tuning/jobs), kept for old clients."""

from __future__ import annotations

from pathlib import Path

from tests.jobs_api.conftest import gsm8k_lines


def upload(client, data: bytes, name: str = "train.jsonl"):
    return client.post("/v1/files", params={"filename": name}, content=data)


def job_body(file_id: str, **extra):
    return {"base_model": "tiny:llama", "training_file": file_id, "method": "lora",
            "hyperparameters": {"max_steps": 4}, **extra}


def test_auth_required(api):
    url, a, b, _ = api
    import httpx

    assert httpx.get(f"{url}/v1/fine-tuning/jobs").status_code == 401
    r = httpx.get(f"{url}/v1/fine-tuning/jobs", headers={"Authorization": "Bearer wrong-key-wrong-key"})
    assert r.status_code == 401


def test_upload_submit_idempotent_and_tenant_isolated(api):
    _, a, b, _ = api
    up = upload(a, gsm8k_lines(20))
    assert up.status_code == 200, up.text
    assert up.json()["rayalign"]["rows"] == 20
    assert up.json()["status"] == "uploaded" and up.json()["rayalign"]["dataset_id"] is None  # ingestion: the runner's
    file_id = up.json()["id"]
    assert a.get(f"/v1/files/{file_id}").json()["rayalign"]["sha256"] == up.json()["rayalign"]["sha256"]
    assert [f["id"] for f in a.get("/v1/files").json()["data"]] == [file_id]
    assert b.get(f"/v1/files/{file_id}").status_code == 404 and b.get("/v1/files").json()["data"] == []

    first = a.post("/v1/fine-tuning/jobs", json=job_body(file_id), headers={"Idempotency-Key": "k-1"})
    assert first.status_code == 200, first.text
    assert first.json()["status"] == "queued"
    again = a.post("/v1/fine-tuning/jobs", json=job_body(file_id), headers={"Idempotency-Key": "k-1"})
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    other = a.post("/v1/fine-tuning/jobs", json=job_body(file_id), headers={"Idempotency-Key": "k-2"})
    assert other.json()["id"] != first.json()["id"]
    assert len(a.get("/v1/fine-tuning/jobs").json()["data"]) == 2

    job_id = first.json()["id"]
    assert a.get(f"/v1/fine-tuning/jobs/{job_id}").status_code == 200
    # tenant B: the job, its events, its cancel, A's file: all look missing
    assert b.get(f"/v1/fine-tuning/jobs/{job_id}").status_code == 404
    assert b.get(f"/v1/fine-tuning/jobs/{job_id}/events").status_code == 404
    assert b.post(f"/v1/fine-tuning/jobs/{job_id}/cancel").status_code == 404
    assert b.get("/v1/fine-tuning/jobs").json()["data"] == []
    r = b.post("/v1/fine-tuning/jobs", json=job_body(file_id))
    assert r.status_code == 404 and r.json()["error"]["param"] == "training_file"
    # same idempotency key from another tenant is a different job
    b_file = upload(b, gsm8k_lines(5)).json()["id"]
    rb = b.post("/v1/fine-tuning/jobs", json=job_body(b_file), headers={"Idempotency-Key": "k-1"})
    assert rb.status_code == 200 and rb.json()["id"] != job_id


def test_cancel_queued_job(api):
    _, a, _, _ = api
    file_id = upload(a, gsm8k_lines(5)).json()["id"]
    job_id = a.post("/v1/fine-tuning/jobs", json=job_body(file_id)).json()["id"]
    r = a.post(f"/v1/fine-tuning/jobs/{job_id}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert a.post(f"/v1/fine-tuning/jobs/{job_id}/cancel").status_code == 409
    kinds = [e["message"] for e in a.get(f"/v1/fine-tuning/jobs/{job_id}/events").json()["data"]]  # newest first
    assert kinds[-1] == "queued" and kinds[0].startswith("cancelled")


def test_malformed_bodies_give_field_errors(api):
    _, a, _, _ = api
    file_id = upload(a, gsm8k_lines(5)).json()["id"]
    cases = {
        "method": job_body(file_id, method="sgd"),
        "base_model": job_body(file_id, base_model="../../etc/passwd"),
        "hyperparameters.learning_rate": job_body(file_id, hyperparameters={"learning_rate": -1}),
        "hyperparameters.epochs": job_body(file_id, hyperparameters={"epochs": 3}),
        "training_file": job_body("not-a-file"),
    }
    for param, body in cases.items():
        r = a.post("/v1/fine-tuning/jobs", json=body)
        assert r.status_code == 400, (param, r.text)
        assert r.json()["error"]["param"] == param and r.json()["error"]["message"].startswith(param), r.json()
    r = a.post("/v1/fine-tuning/jobs", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    missing = a.post("/v1/fine-tuning/jobs", json={"method": "lora"}).json()["error"]
    assert missing["param"] in {"base_model", "training_file"}
    bad = upload(a, b'{"question": "ok"}\n{oops\n')
    assert bad.status_code == 400 and "line 2" in bad.text and bad.json()["error"]["param"] == "file"
    assert upload(a, b"x", name="../evil.jsonl").status_code == 400


def test_oversized_upload_is_413_and_leaves_nothing(api, api_cfg):
    _, a, _, _ = api
    files_dir = Path(api_cfg["files_dir"])
    big = gsm8k_lines(2000)  # ~110 KB > 0.05 MiB
    assert len(big) > 0.05 * 1024 * 1024
    r = upload(a, big)
    assert r.status_code == 413

    def chunks():  # no Content-Length: the bound must hold while streaming
        for i in range(0, len(big), 4096):
            yield big[i:i + 4096]

    r = a.post("/v1/files", params={"filename": "train.jsonl"}, content=chunks())
    assert r.status_code == 413
    leftovers = [p for p in files_dir.rglob("*") if p.is_file()]
    assert leftovers == []
    assert a.post("/v1/fine-tuning/jobs", content=b"{" + b" " * 9000 + b"}",
                  headers={"Content-Type": "application/json"}).status_code == 413


def test_models_are_tenant_scoped(api, api_cfg, tmp_path):
    """A registered adapter of tenant A is listed for A only; B's deploy of it is a 404."""
    import json

    from app.registry.store import Registry

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"r": 8, "peft_type": "LORA"}))
    (adapter / "rayalign_lineage.json").write_text(json.dumps({
        "base_model_source": "tiny:llama", "base_sha": "ab" * 32, "dataset_id": "ds-test", "config_hash": "cd" * 32,
        "method": "lora", "lora": {"r": 8, "alpha": 16, "target_modules": ["q_proj"]}, "metrics": {"loss": 1.0},
        "created_at": "2026-01-01T00:00:00Z"}))
    Registry(api_cfg["db_url"]).register_adapter("alpha", "ft-math", str(adapter))
    _, a, b, _ = api
    mine = a.get("/v1/models").json()["data"]
    assert [m["id"] for m in mine] == ["ft-math"] and mine[0]["owned_by"] == "alpha"
    assert a.get("/v1/models", params={"base_model": "bundled:smollm2-135m-instruct"}).json()["data"] == []
    assert b.get("/v1/models").json()["data"] == []
    assert b.post("/v1/models/ft-math/deploy").status_code == 404
    r = a.post("/v1/models/ft-math/deploy")  # exists, but no gate has passed: refused, not a 500
    assert r.status_code == 409 and r.json()["error"]["param"] == "model", r.text


def test_ppo_job_without_a_reward_source_is_400_naming_the_field(api):
    _, a, _, _ = api
    file_id = upload(a, gsm8k_lines(5)).json()["id"]
    r = a.post("/v1/fine-tuning/jobs", json=job_body(file_id, method="ppo"))
    assert r.status_code == 400 and r.json()["error"]["param"] == "reward_model", r.text
    assert "needs a reward source" in r.json()["error"]["message"]
    r = a.post("/v1/fine-tuning/jobs", json=job_body(file_id, method="ppo", reward_model="ft-nope"))
    assert r.status_code == 400 and "not one of your registered reward models" in r.text, r.text
    r = a.post("/v1/fine-tuning/jobs", json=job_body(file_id, method="lora", reward_rule="gsm8k"))
    assert r.status_code == 400 and "only to method 'ppo'" in r.text, r.text
    assert a.post("/v1/fine-tuning/jobs", json=job_body(file_id, method="ppo", reward_rule="gsm8k")).status_code == 200
