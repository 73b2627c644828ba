"""Issue 19's must-show flow, driven only by the official ``openai`` SDK: the job API on 127.0.0.1 running jobs on a
real local Ray head (tiny model), then the resulting ``ft:`` model answering on the Serve endpoint.

upload (purpose fine-tune, OpenAI chat + DPO JSONL) → supervised job + DPO job → events paged by cursor →
checkpoints → cancel the DPO job while it runs (its Ray job ends STOPPED) → chat with the supervised job's ft: model.
"""

from __future__ import annotations

import io
import json
import time

import openai
import pytest

from tests.jobs_api.conftest import KEY_A, TENANTS, LiveServer, free_port

pytestmark = [pytest.mark.ray, pytest.mark.e2e]


def chat_rows(n: int = 40) -> bytes:
    """OpenAI chat JSONL, varied enough that MinHash near-dedup keeps every row (as tests/jobs_api/test_ray_jobs.py)."""
    import random

    rng = random.Random(0)
    names, things = ["Ann", "Bo", "Cy", "Di", "Ed", "Flo", "Gus", "Hal"], ["apples", "pens", "cards", "stamps", "coins"]
    rows = []
    for i in range(n):
        a, b = rng.randint(2, 99), rng.randint(2, 99)
        who, what = rng.choice(names), rng.choice(things)
        rows.append({"messages": [
            {"role": "user", "content": f"{who} has {a} {what} and buys {b} more on day {i}. How many {what} now?"},
            {"role": "assistant", "content": f"{who} has {a} + {b} = {a + b} {what}.\n#### {a + b}"}]})
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def dpo_rows(n: int = 24) -> bytes:
    """OpenAI DPO JSONL {input, preferred_output, non_preferred_output}: distinct helpful-vs-refusal pairs."""
    import random

    rng = random.Random(1)
    topics = "apples water people words time day week dollars number question".split()
    rows = [{"input": {"messages": [{"role": "user", "content": f"Question {i}: how many {' '.join(rng.sample(topics, 3))}?"}]},
             "preferred_output": [{"role": "assistant", "content": f"Here to help: step by step, {' '.join(rng.sample(topics, 4))} makes {i}."}],
             "non_preferred_output": [{"role": "assistant", "content": f"Sorry, I cannot say anything about {' '.join(rng.sample(topics, 2))} ({i})."}]}
            for i in range(n)]
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def wait(fn, ok, timeout: float, what: str):
    deadline, last = time.time() + timeout, None
    while time.time() < deadline:
        last = fn()
        if ok(last):
            return last
        time.sleep(1)
    raise AssertionError(f"{what}: gave up after {timeout}s; last {last}")


def test_openai_sdk_drives_upload_jobs_events_checkpoints_cancel_and_chat(rayalign_home, tmp_path):
    import ray
    from ray import serve
    from ray.job_submission import JobSubmissionClient

    from app.config.common import RaySpec
    from app.config.loader import load_config
    from app.config.paths import REPO_ROOT
    from app.config.serve import ServeConfig
    from app.jobs_api.app import build_app
    from app.launch.runtime import init_ray
    from app.serve.app import build_app as build_serve_app
    from tests.jobs_api.ray_cluster import RayHead

    t0 = time.time()
    timings: dict[str, float] = {}
    db = f"sqlite:///{tmp_path / 'registry.db'}"
    with RayHead(num_cpus=2) as head:
        cfg = {"tenants": TENANTS, "db_url": db, "files_dir": str(tmp_path / "files"), "poll_interval_s": 0.5,
               "dashboard_address": head.dashboard, "max_concurrent_jobs": 1, "max_concurrent_ingests": 2}
        app = build_app(cfg, run_scheduler=True)
        with LiveServer(app) as url:
            client = openai.OpenAI(base_url=f"{url}/v1", api_key=KEY_A, max_retries=0, timeout=60)
            chat_file = client.files.create(file=("chat.jsonl", io.BytesIO(chat_rows())), purpose="fine-tune")
            pairs = client.files.create(file=("pairs.jsonl", io.BytesIO(dpo_rows())), purpose="fine-tune")
            assert chat_file.purpose == "fine-tune" and chat_file.status == "uploaded"
            for f in (chat_file, pairs):
                done = wait(lambda f=f: client.files.retrieve(f.id), lambda x: x.status in ("processed", "error"),
                            300, f"ingestion of {f.filename}")
                assert done.status == "processed", done
                assert f.model_extra["rayalign"]["rows"] == done.model_extra["rayalign"]["rows"]
                print(f"{f.filename}: {done.status_details}", flush=True)
            timings["uploads_processed_s"] = time.time() - t0

            sft = client.fine_tuning.jobs.create(
                model="tiny-llama", training_file=chat_file.id, suffix="sdk", seed=3,
                method={"type": "supervised", "supervised": {"hyperparameters": {
                    "n_epochs": 2, "batch_size": 1, "learning_rate_multiplier": 2, "max_steps": 4,
                    "checkpoint_every": 2}}})
            dpo = client.fine_tuning.jobs.create(
                model="tiny-llama", training_file=pairs.id, suffix="sdk-dpo",
                method={"type": "dpo", "dpo": {"hyperparameters": {"beta": 0.1, "batch_size": 2, "n_epochs": 50,
                                                                    "max_steps": 200, "checkpoint_every": 2}}})
            assert sft.status == dpo.status == "queued"
            done = wait(lambda: client.fine_tuning.jobs.retrieve(sft.id), lambda j: j.status in ("succeeded", "failed",
                        "cancelled"), 600, "supervised job")
            assert done.status == "succeeded", done
            timings["supervised_succeeded_s"] = time.time() - t0
            assert done.fine_tuned_model.startswith("ft:tiny-llama:alpha:sdk:"), done.fine_tuned_model
            assert done.finished_at and done.model_extra["rayalign"]["registry"]["version"] == 1
            usage = done.model_extra["rayalign"]["usage"]
            assert done.trained_tokens and done.trained_tokens > 0 and usage["cpu_seconds"] > 0, usage
            timings["usage"] = usage
            import httpx

            total = httpx.get(f"{url}/v1/usage", headers={"Authorization": f"Bearer {KEY_A}"}).json()
            assert total["jobs"] >= 1 and total["tokens_trained"] >= done.trained_tokens, total

            # events: the SDK pages through them with `after` cursors, two per page
            first = client.fine_tuning.jobs.list_events(sft.id, limit=2)
            assert len(first.data) == 2 and first.has_more
            events = list(client.fine_tuning.jobs.list_events(sft.id, limit=2))
            everything = client.fine_tuning.jobs.list_events(sft.id, limit=1000).data
            assert [e.id for e in events] == [e.id for e in everything] and len(events) > 4
            assert events[-1].message == "queued" and events[0].created_at >= events[-1].created_at
            checkpoints = list(client.fine_tuning.jobs.checkpoints.list(sft.id, limit=1))
            assert checkpoints and checkpoints[0].step_number == 4, checkpoints
            assert checkpoints[0].fine_tuned_model_checkpoint.startswith(done.fine_tuned_model)

            # the DPO job starts once the supervised one is done: cancel it while it runs
            running = wait(lambda: client.fine_tuning.jobs.retrieve(dpo.id),
                           lambda j: j.status in ("running", "failed", "succeeded"), 300, "DPO job start")
            assert running.status == "running", running
            assert client.fine_tuning.jobs.cancel(dpo.id).model_extra["rayalign"]["cancel_requested"]
            cancelled = wait(lambda: client.fine_tuning.jobs.retrieve(dpo.id),
                             lambda j: j.status in ("cancelled", "failed", "succeeded"), 300, "DPO cancel")
            assert cancelled.status == "cancelled", cancelled
            ray_jobs = JobSubmissionClient(head.dashboard)
            assert ray_jobs.get_job_status(f"{dpo.id}-a1").value == "STOPPED"
            timings["dpo_cancelled_s"] = time.time() - t0
            app.state.runner.stop()

        # the fine-tuned model on the Serve endpoint (registry resolver over the same database), same SDK
        # this driver joins the test's own head: a session-wide local cluster (``ray_local``, started by an
        # earlier test in the same pytest run) is stopped first and started again afterwards
        session_cluster = ray.is_initialized()
        if session_cluster:
            ray.shutdown()
        ray.init(address=f"127.0.0.1:{head.gcs_port}", runtime_env={"env_vars": {
            "PYTHONPATH": str(REPO_ROOT), "RAYALIGN_HOME": str(rayalign_home), "RAY_AUTH_MODE": "disabled"}})
        try:
            port = free_port()
            serve.start(http_options={"host": "127.0.0.1", "port": port})
            tenants = "tenants=[" + ", ".join(f"{{name: {t['name']}, api_key_sha256: [{t['api_key_sha256'][0]}]}}"
                                              for t in TENANTS) + "]"
            scfg = load_config(None, ServeConfig, [
                "model.source=tiny:llama", "engine=hf", "adapters.kind=registry", f"adapters.registry_url={db}",
                "engine_deployment.num_cpus=0.5", "ingress_deployment.num_cpus=0.1", "limits.max_tokens=16",
                "limits.max_model_len=256", tenants])
            serve.run(build_serve_app(scfg), name="sdk-e2e", route_prefix="/", blocking=False)
            served = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=KEY_A, max_retries=0, timeout=120)
            assert done.fine_tuned_model in [m.id for m in served.models.list()]
            reply = served.chat.completions.create(model=done.fine_tuned_model, max_tokens=8, temperature=0,
                                                   messages=[{"role": "user", "content": "What is 2 + 2?"}])
            assert reply.choices[0].message.content is not None and reply.usage.completion_tokens > 0
            assert reply.system_fingerprint == "alpha/ft-sdk@v1", reply.system_fingerprint
            with pytest.raises(openai.NotFoundError):  # another tenant's key cannot use it
                openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="tenant-b-key-0123456789",
                              max_retries=0).chat.completions.create(
                    model=done.fine_tuned_model, max_tokens=4, messages=[{"role": "user", "content": "hi"}])
            timings["chat_answered_s"] = time.time() - t0
        finally:
            serve.shutdown()
            ray.shutdown()
            if session_cluster:
                init_ray(RaySpec(address="local", num_cpus=2))
    print("sdk e2e timings:", json.dumps({k: round(v, 1) if isinstance(v, float) else v for k, v in timings.items()}))
