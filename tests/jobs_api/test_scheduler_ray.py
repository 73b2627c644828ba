"""The scheduler against a real Ray head (JobSubmissionClient): one unreadable job does not stall the others, a
cancel that lands right after the submit leaves no Ray job running, and N uploads start at most the configured
number of ingestion Ray jobs. Ticks are driven by hand (no scheduler thread)."""

from __future__ import annotations

import json
import time

import pytest

from tests.jobs_api.conftest import TENANTS

pytestmark = [pytest.mark.ray, pytest.mark.e2e]
LIVE_RAY = {"PENDING", "RUNNING"}


@pytest.fixture(scope="module")
def head(rayalign_home):
    from tests.jobs_api.ray_cluster import RayHead

    with RayHead(num_cpus=2) as h:
        yield h


@pytest.fixture
def runner(head, tmp_path):
    from ray.job_submission import JobSubmissionClient

    from app.config.pipeline import JobsAPIConfig
    from app.jobs_api.runner import JobRunner
    from app.jobs_api.store import JobStore

    cfg = JobsAPIConfig.model_validate({"tenants": TENANTS, "db_url": f"sqlite:///{tmp_path / 'r.db'}",
                                        "dashboard_address": head.dashboard, "max_concurrent_jobs": 2,
                                        "max_concurrent_ingests": 2, "ingest_num_cpus": 0.5})
    client = JobSubmissionClient(head.dashboard)
    head.submit(client, entrypoint="true")  # waits out 'No available agent' while the head's job agent starts
    r = JobRunner(cfg, JobStore(cfg.db_url), client=client)
    yield r
    for info in client.list_jobs():  # leave nothing running for the next test
        if str(info.status.value) in LIVE_RAY and info.submission_id:
            client.stop_job(info.submission_id)


def processed_file(store, tmp_path, tenant="alpha") -> str:
    path = tmp_path / f"{tenant}.jsonl"
    path.write_text(json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}) + "\n")
    fid = "file-" + f"{abs(hash(str(path))):020x}"[:20]
    store.add_file(tenant, fid, filename=path.name, format="jsonl", path=str(path), bytes=path.stat().st_size,
                   sha256="0" * 64, rows=1, status="processed", record_type="sft", purpose="fine-tune")
    return fid


def new_job(store, file_id: str, **hyper) -> str:
    job, _ = store.create_job("alpha", "lora", {"base_model": "tiny:llama", "training_file": file_id, "method": "lora",
                                                "hyperparameters": {"max_steps": 500, **hyper}, "eval_config": {}})
    return job["id"]


def ray_status(runner, sid: str) -> str:
    return str(runner.client.get_job_status(sid).value)


def test_bogus_submission_id_does_not_stall_other_jobs(runner, tmp_path):
    store = runner.store
    fid = processed_file(store, tmp_path)
    stuck = new_job(store, fid)
    store.apply(stuck, "start", "pretend", ray_submission_id="no-such-ray-job-a1", attempts=1)
    waiting = new_job(store, fid)
    runner.tick()  # main: get_job_status('no-such-ray-job-a1') raised and the tick ended there
    job = store.get_job(None, waiting)
    assert job["status"] == "running" and job["ray_submission_id"] == f"{waiting}-a1", job
    assert ray_status(runner, job["ray_submission_id"]) in LIVE_RAY | {"SUCCEEDED", "FAILED"}
    runner.client.stop_job(job["ray_submission_id"])
    for _ in range(3):  # unreadable three ticks in a row: treated like a vanished process (re-queued, attempt 2)
        runner.tick()
    events = [e["message"] for e in store.list_events(stuck)]
    assert any(m.startswith("preempted") and "cannot be read" in m for m in events), events


class CancelRightAfterSubmit:
    """The real client; the user's cancel arrives the moment ``submit_job`` returns (the race, made deterministic)."""

    def __init__(self, client, store):
        self.client, self.store = client, store

    def __getattr__(self, name):
        return getattr(self.client, name)

    def submit_job(self, **kwargs):
        sid = self.client.submit_job(**kwargs)
        job_id = kwargs["metadata"]["rayalign_job_id"]
        self.store.request_cancel(self.store.get_job(None, job_id)["tenant"], job_id)
        return sid


def test_cancel_right_after_submit_leaves_no_running_ray_job(runner, tmp_path):
    store = runner.store
    job_id = new_job(store, processed_file(store, tmp_path))
    real = runner.client
    runner._client = CancelRightAfterSubmit(real, store)
    try:
        runner.tick()  # main: 'cannot start a job that is cancelled' after submitting: the Ray job ran unmonitored
    finally:
        runner._client = real
    sid = f"{job_id}-a1"
    deadline = time.time() + 90
    while store.get_job(None, job_id)["status"] != "cancelled" or ray_status(runner, sid) in LIVE_RAY:
        assert time.time() < deadline, (store.get_job(None, job_id)["status"], ray_status(runner, sid))
        runner.tick()
        time.sleep(1)
    assert ray_status(runner, sid) == "STOPPED"


def test_ten_uploads_start_at_most_the_configured_ingest_jobs(runner, tmp_path):
    store = runner.store
    for i in range(10):
        path = tmp_path / f"u{i}.jsonl"
        path.write_text("".join(json.dumps({"question": f"q{i}-{k}?", "answer": f"#### {k}"}) + "\n" for k in range(5)))
        store.add_file("alpha", f"file-{i:020d}", filename=path.name, format="jsonl", path=str(path),
                       bytes=path.stat().st_size, sha256="0" * 64, rows=5, status="uploaded", purpose="fine-tune")
    peak = 0
    for _ in range(4):  # main submitted all ten in the first tick, each reserving 0 CPUs
        runner.tick()
        ingest = [j for j in runner.client.list_jobs() if (j.submission_id or "").endswith("-ingest")]
        live = [j for j in ingest if str(j.status.value) in LIVE_RAY]
        peak = max(peak, len(live))
        assert len(store.list_files(statuses={"ingesting"})) <= 2
        time.sleep(0.5)
    assert 1 <= peak <= 2, peak
    # each reserves ingest_num_cpus through entrypoint_num_cpus (Ray 2.60's JobDetails does not expose it back)
    assert len(ingest) <= 2 + 2 * 3  # at most the bound new ones per tick
