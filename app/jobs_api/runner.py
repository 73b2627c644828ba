"""Runs job-API jobs as Ray jobs (``JobSubmissionClient``), so each shows on the Ray dashboard with its logs.

One ``JobRunner.tick()`` moves every job one step: queued jobs are written out as a pipeline config and submitted;
live jobs are polled; a finished Ray job becomes succeeded / failed / cancelled, or preempted and re-queued when its
process vanished without reporting (see ``app.jobs_api.states.exit_events``). The job process reports its own
progress (step, loss, tokens/s, checkpoint) straight into the store.
"""

from __future__ import annotations

import logging
import sys
import threading
from pathlib import Path

import yaml

from app.config.paths import REPO_ROOT, rayalign_home
from app.config.pipeline import JobsAPIConfig
from app.jobs_api.states import LIVE, JobStatus, exit_events
from app.jobs_api.store import JobStore
from app.pipeline.job_config import pipeline_for_job

log = logging.getLogger(__name__)
_DONE = {"SUCCEEDED", "FAILED", "STOPPED"}


def jobs_root() -> Path:
    root = rayalign_home() / "jobs"
    root.mkdir(parents=True, exist_ok=True)
    return root


class JobRunner:
    """Submits queued jobs to Ray and folds Ray job states back into the job store."""

    def __init__(self, cfg: JobsAPIConfig, store: JobStore, client=None):
        self.cfg, self.store = cfg, store
        self._client = client
        self._stop = threading.Event()

    @property
    def client(self):
        if self._client is None:
            from ray.job_submission import JobSubmissionClient

            self._client = JobSubmissionClient(self.cfg.dashboard_address)
        return self._client

    def tick(self) -> None:
        """Poll live jobs, then submit queued ones while there is room."""
        live = self.store.list_jobs(statuses=set(LIVE), limit=1000)
        for job in live:
            self._poll(job)
        running = len(self.store.list_jobs(statuses=set(LIVE), limit=1000))
        queued = sorted(self.store.list_jobs(statuses={JobStatus.QUEUED}, limit=1000), key=lambda j: j["created_at"])
        for job in queued[: max(0, self.cfg.max_concurrent_jobs - running)]:
            self._submit(job)

    def _submit(self, job: dict) -> None:
        attempt = job["attempts"] + 1
        job_dir = jobs_root() / job["id"]
        job_dir.mkdir(parents=True, exist_ok=True)
        files = {key: self.store.get_file(job["tenant"], job["request"][key])
                 for key in ("training_file", "validation_file") if job["request"].get(key)}
        if any(f is None for f in files.values()):
            self.store.apply(job["id"], "fail", "training/validation file no longer exists")
            return
        pipeline = pipeline_for_job(job, {k: f["path"] for k, f in files.items()}, job_dir, self.store.url,
                                    REPO_ROOT / self.cfg.pipeline_template)
        config_path = job_dir / "pipeline.yaml"
        config_path.write_text(yaml.safe_dump(pipeline, sort_keys=False))
        submission_id = f"{job['id']}-a{attempt}"
        self.client.submit_job(
            entrypoint=f"{sys.executable} -m jobs.pipeline --config {config_path}",
            submission_id=submission_id,
            entrypoint_num_cpus=self.cfg.job_num_cpus,
            runtime_env={"env_vars": {"PYTHONPATH": str(REPO_ROOT), "RAYALIGN_HOME": str(rayalign_home()),
                                      "RAY_AUTH_MODE": "disabled", "TOKENIZERS_PARALLELISM": "false"}},
            metadata={"rayalign_job_id": job["id"], "tenant": job["tenant"], "attempt": str(attempt)},
        )
        self.store.apply(job["id"], "start", f"attempt {attempt} submitted as Ray job {submission_id}",
                         ray_submission_id=submission_id, attempts=attempt, reported=None)

    def _poll(self, job: dict) -> None:
        sid = job["ray_submission_id"]
        ray_status = str(self.client.get_job_status(sid).value) if sid else "FAILED"
        if ray_status not in _DONE:
            if job["cancel_requested"]:
                self.client.stop_job(sid)
            return
        fresh = self.store.get_job(None, job["id"])  # the job may have reported while we looked
        for event in exit_events(ray_status, fresh["reported"], fresh["cancel_requested"], fresh["attempts"],
                                 self.cfg.max_attempts):
            message = {"preempt": f"Ray job {sid} ended {ray_status} without reporting; resumes from "
                                  f"{fresh['checkpoint_path'] or 'the start'}",
                       "requeue": f"attempt {fresh['attempts'] + 1} of {self.cfg.max_attempts}"}.get(event, "")
            self.store.apply(job["id"], event, message)

    def run_forever(self) -> None:
        """The scheduler loop (a daemon thread in the API replica)."""
        while not self._stop.wait(self.cfg.poll_interval_s):
            try:
                self.tick()
            except Exception:  # noqa: BLE001 - a dashboard hiccup must not kill the scheduler
                log.exception("job runner tick failed")

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.run_forever, name="rayalign-job-runner", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self._stop.set()
