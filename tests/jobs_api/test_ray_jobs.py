"""The job API on Ray Serve, running jobs as real Ray jobs on a real local cluster, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import sys
import time

import httpx
import pytest

from tests.jobs_api.conftest import KEY_A, KEY_B, free_port, gsm8k_lines

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def served_api(tmp_path_factory, rayalign_home):
    """The API deployed on Serve by a Ray job (`rayalign jobs api --address auto`), like an operator would."""
    from ray.job_submission import JobSubmissionClient

    from app.config.paths import REPO_ROOT
    from tests.jobs_api.ray_cluster import RayHead

    tmp = tmp_path_factory.mktemp("api")
    port = free_port()
    with RayHead(num_cpus=2) as head:
        client = JobSubmissionClient(head.dashboard)
        env = {"PYTHONPATH": str(REPO_ROOT), "RAYALIGN_HOME": str(rayalign_home), "RAY_AUTH_MODE": "disabled",
               "KEY_A": KEY_A, "KEY_B": KEY_B}
        tenants = "tenants=[{name: alpha, api_key_env: KEY_A}, {name: beta, api_key_env: KEY_B}]"
        sid = head.submit(
            client,
            entrypoint=f"{sys.executable} -m app.cli jobs api --address auto port={port} poll_interval_s=0.5 "
                       f"dashboard_address={head.dashboard} db_url=sqlite:///{tmp}/registry.db files_dir={tmp}/files "
                       f"'{tenants}'",
            runtime_env={"env_vars": env})
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 180
        while True:
            try:
                if httpx.get(f"{url}/v1/models", headers={"Authorization": f"Bearer {KEY_A}"}).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            status = client.get_job_status(sid).value
            assert status not in {"FAILED", "STOPPED"}, client.get_job_logs(sid)[-3000:]
            assert time.time() < deadline, "API did not come up on Serve"
            time.sleep(1)
        a = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {KEY_A}"}, timeout=30)
        yield url, a, client, head
        a.close()


def wait_for(client, job_id, statuses, timeout=300):
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = client.get(f"/v1/fine-tuning/jobs/{job_id}").json()
        if job["status"] in statuses:
            return job
        time.sleep(1)
    raise AssertionError(f"job {job_id} never reached {statuses}: {job}")


def test_failing_job_fails_and_is_not_requeued(served_api):
    """A job whose pipeline raises reports 'failed' itself: final, never re-queued, the error is visible."""
    _, a, ray_client, _ = served_api
    file_id = a.post("/v1/files", params={"filename": "t.jsonl"}, content=gsm8k_lines(10)).json()["id"]
    body = {"base_model": "tiny:llama", "training_file": file_id, "method": "ppo"}
    job = a.post("/v1/fine-tuning/jobs", json=body).json()
    done = wait_for(a, job["job_id"], {"failed", "succeeded"})
    assert done["status"] == "failed" and done["attempts"] == 1 and done["error"], done
    info = ray_client.get_job_info(f"{job['job_id']}-a1")  # it really ran as a Ray job
    assert info.metadata["rayalign_job_id"] == job["job_id"]
    messages = [e["message"] for e in a.get(f"/v1/fine-tuning/jobs/{job['job_id']}/events").json()["data"]]
    assert not any(m.startswith("preempted") for m in messages)
