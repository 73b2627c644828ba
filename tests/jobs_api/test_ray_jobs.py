"""The job API on Ray Serve, running jobs as real Ray jobs on a real local cluster, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import sys
import time

import httpx
import pytest

from tests.jobs_api.conftest import KEY_A, TENANTS, free_port, gsm8k_lines

pytestmark = [pytest.mark.ray, pytest.mark.e2e]


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
        env = {"PYTHONPATH": str(REPO_ROOT), "RAYALIGN_HOME": str(rayalign_home), "RAY_AUTH_MODE": "disabled"}
        tenants = "tenants=[" + ", ".join(f"{{name: {t['name']}, api_key_sha256: [{t['api_key_sha256'][0]}]}}"
                                          for t in TENANTS) + "]"
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
        head.db_url = f"sqlite:///{tmp}/registry.db"  # server paths (checkpoints) are read from the store, not the API
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
    """A job whose pipeline raises reports 'failed' itself: final, never re-queued, the error is visible.

    The failing case: a DPO job on a file of question/answer rows — accepted (the file exists), ingested as SFT data,
    and refused by the DPO stage, which needs preference pairs."""
    _, a, ray_client, _ = served_api
    file_id = a.post("/v1/files", params={"filename": "t.jsonl"}, content=gsm8k_lines(10)).json()["id"]
    body = {"base_model": "tiny:llama", "training_file": file_id, "method": "dpo"}
    job = a.post("/v1/fine-tuning/jobs", json=body).json()
    done = wait_for(a, job["id"], {"failed", "succeeded"})
    assert done["status"] == "failed" and done["rayalign"]["attempts"] == 1 and done["error"], done
    assert "needs a 'preference' dataset artifact" in done["error"]["message"], done
    info = ray_client.get_job_info(f"{job['id']}-a1")  # it really ran as a Ray job
    assert info.metadata["rayalign_job_id"] == job["id"]
    messages = [e["message"] for e in a.get(f"/v1/fine-tuning/jobs/{job['id']}/events").json()["data"]]
    assert not any(m.startswith("preempted") for m in messages)


def preference_lines(n: int = 24) -> bytes:
    """Distinct helpful-vs-refusal pairs ({prompt, chosen, rejected})."""
    import json
    import random

    rng = random.Random(1)
    topics = "apples water people words time day week dollars number question".split()
    rows = [{"prompt": f"Question {i}: how many {' '.join(rng.sample(topics, 3))}?",
             "chosen": f"Here to help: step by step, {' '.join(rng.sample(topics, 4))} makes {i}.",
             "rejected": f"Sorry, I cannot say anything about {' '.join(rng.sample(topics, 2))} ({i})."} for i in range(n)]
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def test_reward_job_then_ppo_job_scored_by_that_reward_model(served_api):
    """method 'reward' trains and registers a reward model; method 'ppo' with reward_model = it runs GRPO on uploaded
    prompts, scored by that RM (the rule logged beside it), and registers the policy adapter naming the RM."""
    import json

    from app.jobs_api.runner import jobs_root

    _, a, _, _ = served_api
    t0 = time.time()
    pairs = a.post("/v1/files", params={"filename": "pairs.jsonl"}, content=preference_lines()).json()["id"]
    body = {"base_model": "tiny:llama", "training_file": pairs, "method": "reward", "suffix": "rm",
            "hyperparameters": {"max_steps": 4, "checkpoint_every": 2, "batch_size": 4}}
    rm_job = a.post("/v1/fine-tuning/jobs", json=body).json()["id"]
    done = wait_for(a, rm_job, {"failed", "succeeded"}, timeout=600)
    assert done["status"] == "succeeded", done
    t_rm = time.time() - t0
    assert any(m["id"] == "ft-rm" and m["method"] == "reward" for m in a.get("/v1/models").json()["data"])
    prompts = a.post("/v1/files", params={"filename": "q.jsonl"}, content=gsm8k_lines(12)).json()["id"]
    body = {"base_model": "tiny:llama", "training_file": prompts, "method": "ppo", "suffix": "ppo",
            "reward_model": "ft-rm", "reward_rule": "gsm8k", "hyperparameters": {"max_steps": 2, "batch_size": 2}}
    ppo_job = a.post("/v1/fine-tuning/jobs", json=body)
    assert ppo_job.status_code == 200, ppo_job.text  # OpenAI's create answers 200 (the old body's alias too)
    done = wait_for(a, ppo_job.json()["id"], {"failed", "succeeded"}, timeout=600)
    assert done["status"] == "succeeded", done
    assert any(m["id"] == "ft-ppo" and m["method"] == "grpo" for m in a.get("/v1/models").json()["data"])
    run = jobs_root() / ppo_job.json()["id"] / "report" / "ppo"
    lineage = json.loads((run / "adapter" / "rayalign_lineage.json").read_text())
    assert lineage["parents"]["reward_model"]["path"].endswith("reward-model")
    history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(history) == 2 and all("rm_score" in h and "rule_score" in h for h in history)
    print(f"reward job succeeded in {t_rm:.0f}s; ppo job {time.time() - t0 - t_rm:.0f}s later")


def upload_sample(a) -> str:
    """Distinct GSM8K-style rows (varied enough that MinHash near-dedup keeps them)."""
    import json
    import random

    rng = random.Random(0)
    names, things = ["Ann", "Bo", "Cy", "Di", "Ed", "Flo", "Gus", "Hal"], ["apples", "pens", "cards", "stamps", "coins"]
    rows = []
    for i in range(40):
        a_, b_ = rng.randint(2, 99), rng.randint(2, 99)
        who, what = rng.choice(names), rng.choice(things)
        rows.append({"question": f"{who} has {a_} {what} and buys {b_} more on day {i}. How many {what} now?",
                     "answer": f"{who} has {a_} + {b_} = {a_ + b_} {what}.\n#### {a_ + b_}"})
    data = "".join(json.dumps(r) + "\n" for r in rows).encode()
    r = a.post("/v1/files", params={"filename": "sft.jsonl"}, content=data)
    assert r.status_code == 200, r.text
    return r.json()["id"]


def test_upload_is_ingested_into_a_dataset_artifact(served_api):
    """POST /v1/files -> uploaded -> (Ray ingest job) -> processed with a dataset artifact id; bad records -> error."""
    _, a, ray_client, _ = served_api
    t0 = time.time()
    file_id = upload_sample(a)
    deadline = time.time() + 240
    while (f := a.get(f"/v1/files/{file_id}").json())["status"] not in {"processed", "error"}:
        assert time.time() < deadline, f
        time.sleep(0.5)
    assert f["status"] == "processed", f
    assert f["rayalign"]["record_type"] == "sft" and f["rayalign"]["dataset_id"].startswith("sft-"), f
    assert "40 of 40 rows kept" in f["status_details"], f
    assert ray_client.get_job_status(f"{file_id}-ingest").value == "SUCCEEDED"
    print(f"upload -> processed in {time.time() - t0:.1f}s: {f['rayalign']['dataset_id']} ({f['status_details']})")
    # well-formed JSON whose records no reader accepts: the file is stored, ingestion reports why it failed
    bad = a.post("/v1/files", params={"filename": "odd.jsonl"}, content=b'{"foo": 1}\n{"foo": 2}\n').json()
    while (f := a.get(f"/v1/files/{bad['id']}").json())["status"] not in {"processed", "error"}:
        assert time.time() < deadline + 120, f
        time.sleep(0.5)
    assert f["status"] == "error" and f["rayalign"]["dataset_id"] is None and f["status_details"], f


def kill_job_process(job_id: str) -> list[int]:
    """SIGKILL the job's entrypoint process (what a lost node or a spot reclaim does to it)."""
    import os
    import signal
    import subprocess

    pids = [int(p) for p in subprocess.run(["pgrep", "-f", f"{job_id}/pipeline.yaml"], capture_output=True,
                                           text=True).stdout.split()]
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    return pids


def test_killed_job_is_preempted_requeued_resumes_and_succeeds(served_api):
    """submit → running → (checkpoint) → SIGKILL → preempted → queued → running → resumes → succeeded + registered."""
    _, a, ray_client, head = served_api
    from app.jobs_api.store import JobStore

    store = JobStore(head.db_url)
    body = {"base_model": "tiny:llama", "training_file": upload_sample(a), "method": "lora",
            # batch_size 1: the 40 rows pack into ~23 windows, 5 steps an epoch on 2 workers; 3 epochs reach step 12
            "hyperparameters": {"max_steps": 12, "checkpoint_every": 3, "batch_size": 1}, "suffix": "resume"}
    t0 = time.time()
    job_id = a.post("/v1/fine-tuning/jobs", json=body, headers={"Idempotency-Key": "resume-1"}).json()["id"]
    deadline = time.time() + 400
    while True:  # wait for a real checkpoint, then kill the job's process
        job = a.get(f"/v1/fine-tuning/jobs/{job_id}").json()
        assert job["status"] not in {"failed", "succeeded"}, job
        if store.get_job(None, job_id)["checkpoint_path"] and job["rayalign"]["step"] >= 3:
            break
        assert time.time() < deadline, job
        time.sleep(0.5)
    killed_at, t_kill = job["rayalign"]["step"], time.time()
    assert kill_job_process(job_id)
    # the job's output goes to its report folder's console.log (the quiet console; both attempts append to it):
    # read now, before the runner can even see the Ray job fail, it holds attempt 1's lines only
    from app.jobs_api.runner import jobs_root

    console = jobs_root() / job_id / "report" / "console.log"
    attempt1_output = console.read_text(errors="replace") if console.exists() else ""
    done = wait_for(a, job_id, {"succeeded", "failed"}, timeout=600)
    assert done["status"] == "succeeded", done
    assert done["rayalign"]["attempts"] == 2 and done["rayalign"]["step"] == 12, done
    statuses = [e["message"].split(":")[0] for e in store.list_events(job_id) if e["kind"] == "status"]
    i = statuses.index("preempted")
    assert statuses[i + 1] == "queued" and "running" in statuses[i + 2:], statuses
    # the second attempt resumed from the checkpoint the first one left: at most one interval of steps lost
    from app.train.checkpoint import read_manifest
    from pathlib import Path

    final = read_manifest(Path(store.get_job(None, job_id)["checkpoint_path"]))
    resumed = final["state"]["resumed_from"]
    assert resumed and killed_at - resumed[0] <= 3 and resumed[0] >= 3, (resumed, killed_at)
    # steps lost = the last step attempt 1 reported (its console.log / Ray job log) minus the step attempt 2 resumed from
    import re

    attempt1_output += ray_client.get_job_logs(f"{job_id}-a1") or ""
    reported = [int(n) for n in re.findall(r"'step': (\d+)", attempt1_output)]
    assert reported, f"attempt 1's output has no per-step training reports: {attempt1_output[-2000:]}"
    reached = max(reported)
    assert 0 <= reached - resumed[0] <= 3, (reached, resumed)
    print(f"killed at step {reached} ({t_kill - t0:.0f}s after submit), resumed from step {resumed[0]}: "
          f"{reached - resumed[0]} steps lost (checkpoint every 3); succeeded at step 12 {time.time() - t0:.0f}s after submit")
    models = a.get("/v1/models").json()["data"]
    assert any(m["id"] == "ft-resume" and m["method"] == "lora" for m in models), models
    # the duplicate key returns the first job, even after it finished
    again = a.post("/v1/fine-tuning/jobs", json=body, headers={"Idempotency-Key": "resume-1"})
    assert again.status_code == 200 and again.json()["id"] == job_id


def test_cancel_running_job(served_api):
    _, a, ray_client, _ = served_api
    body = {"base_model": "tiny:llama", "training_file": upload_sample(a), "method": "lora",
            "hyperparameters": {"max_steps": 500, "checkpoint_every": 50}}
    job_id = a.post("/v1/fine-tuning/jobs", json=body).json()["id"]
    wait_for(a, job_id, {"running", "checkpointing"}, timeout=300)
    assert a.post(f"/v1/fine-tuning/jobs/{job_id}/cancel").status_code == 200
    done = wait_for(a, job_id, {"cancelled", "failed", "succeeded"}, timeout=300)
    assert done["status"] == "cancelled", done
    assert ray_client.get_job_status(f"{job_id}-a1").value == "STOPPED"
