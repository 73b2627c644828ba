"""Runs job-API jobs as Ray jobs (``JobSubmissionClient``), so each shows on the Ray dashboard with its logs.

One ``JobRunner.tick()`` moves every job one step: queued jobs are written out as a pipeline config and submitted;
live jobs are polled; a finished Ray job becomes succeeded / failed / cancelled, or preempted and re-queued when its
process vanished without reporting (see ``app.jobs_api.states.exit_events``). The job process reports its own
progress (step, loss, tokens/s, checkpoint) straight into the store.

Each job and each file is handled in its own ``try``: one whose Ray status cannot be read is retried next tick; when
Ray says its submission does not exist (a bogus id) ``STATUS_FAILURES`` ticks in a row, it is treated as a vanished
process (preempted → re-queued, or failed after ``max_attempts``); a dashboard outage is retried without end. It
never stops the others. A job is *claimed*
(queued → running, submission id written) in a locked transaction before it is submitted, so a cancel that lands
first leaves nothing submitted, and one that lands after finds a running job whose Ray job the next poll stops.
Uploads are ingested by at most ``max_concurrent_ingests`` Ray jobs at once, each reserving ``ingest_num_cpus``.
Which queued jobs start is ``app.jobs_api.schedule.pick`` (priority classes with aging, per-tenant limits).
"""

from __future__ import annotations

import logging
import shlex
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import yaml

from app.config.paths import REPO_ROOT, rayalign_home
from app.config.pipeline import JobsAPIConfig
from app.jobs_api.schedule import pick
from app.jobs_api.states import LIVE, InvalidTransition, JobStatus, exit_events
from app.jobs_api.store import JobStore
from app.pipeline.job_config import heldout_from_validation, pipeline_for_job

log = logging.getLogger(__name__)
_DONE = {"SUCCEEDED", "FAILED", "STOPPED"}
STATUS_FAILURES = 3  # ticks in a row a live job's Ray status may be unreadable before it counts as vanished


def jobs_root() -> Path:
    root = rayalign_home() / "jobs"
    root.mkdir(parents=True, exist_ok=True)
    return root


def reusable_dataset(file: dict, base_model: str) -> str | None:
    """The file's upload-time artifact when it was tokenized for ``base_model`` (else the job ingests it itself)."""
    from app.data.artifact import load_artifact

    if file["status"] != "processed" or not file["dataset_path"]:
        return None
    try:
        artifact = load_artifact(file["dataset_path"])
    except Exception:  # noqa: BLE001 - a vanished artifact just means ingesting again
        return None
    return str(artifact.path) if artifact.manifest.get("model_source") == base_model else None


class JobRunner:
    """Submits queued jobs to Ray and folds Ray job states back into the job store."""

    def __init__(self, cfg: JobsAPIConfig, store: JobStore, client=None):
        self.cfg, self.store = cfg, store
        self._client = client
        self._stop = threading.Event()
        self._status_failures: Counter[str] = Counter()

    @property
    def client(self):
        if self._client is None:
            from ray.job_submission import JobSubmissionClient

            self._client = JobSubmissionClient(self.cfg.dashboard_address)
        return self._client

    def tick(self) -> None:
        """Ingest new uploads, poll live jobs, then submit queued ones while there is room (each job isolated)."""
        self._ingest_files()
        for job in self.store.list_jobs(statuses=set(LIVE), limit=1000):
            try:
                self._poll(job)
                self._status_failures.pop(job["id"], None)
            except Exception as exc:  # noqa: BLE001 - this job's trouble must not stall the others
                # only Ray's own "does not exist" counts toward 'lost'; a dashboard outage is retried forever
                # (treating a running job as lost would start a second copy of it)
                gone = "does not exist" in str(exc) or "status code 404" in str(exc)
                self._status_failures[job["id"]] += 1 if gone else 0
                log.exception("polling job %s failed (%d in a row)", job["id"], self._status_failures[job["id"]])
                if self._status_failures[job["id"]] >= STATUS_FAILURES:
                    self._status_failures.pop(job["id"], None)
                    self._lost(job)
        live = self.store.list_jobs(statuses=set(LIVE), limit=1000)
        slots = self.cfg.max_concurrent_jobs - len(live)
        if slots <= 0:
            return
        ready = []
        for job in self.store.list_jobs(statuses={JobStatus.QUEUED}, limit=1000):
            try:
                if self._ready(job):
                    ready.append(job)
            except Exception:  # noqa: BLE001
                log.exception("checking job %s failed", job["id"])
        running = Counter(j["tenant"] for j in live)
        for job in pick(ready, running, slots, time.time(), self.cfg.aging_s, self._running_limit):
            try:
                self._submit(job)
            except Exception as exc:  # noqa: BLE001 - a job that cannot be submitted fails alone, with the reason
                log.exception("submitting job %s failed", job["id"])
                fresh = self.store.get_job(None, job["id"])
                if fresh and fresh["status"] == JobStatus.QUEUED.value:  # failed before its claim: a config problem
                    self._give_up(job["id"], f"could not be prepared: {type(exc).__name__}")
                elif fresh:  # claimed, but Ray refused it: like a lost attempt (re-queued while attempts remain)
                    self._lost(fresh)

    def _running_limit(self, tenant: str) -> int | None:
        return self.cfg.quotas.get(tenant, self.cfg.default_quota).max_running_jobs

    def _give_up(self, job_id: str, message: str) -> None:
        try:
            self.store.apply(job_id, "fail", message)
        except InvalidTransition:
            pass

    def _lost(self, job: dict) -> None:
        """A live job whose Ray job cannot be read at all: like a process that vanished without reporting."""
        fresh = self.store.get_job(None, job["id"])
        if fresh is None or fresh["status"] not in {s.value for s in LIVE}:
            return
        for event in exit_events("FAILED", fresh["reported"], fresh["cancel_requested"], fresh["attempts"],
                                 self.cfg.max_attempts):
            self.store.apply(job["id"], event, f"Ray job {job['ray_submission_id']} cannot be read; treated as lost"
                             if event != "requeue" else f"attempt {fresh['attempts'] + 1} of {self.cfg.max_attempts}")

    def _files(self, job: dict) -> dict[str, dict | None]:
        return {key: self.store.get_file(job["tenant"], job["request"][key])
                for key in ("training_file", "validation_file") if job["request"].get(key)}

    def _ready(self, job: dict) -> bool:
        """Whether a queued job can start now; a job whose files vanished or failed ingestion is failed here."""
        files = self._files(job)
        if any(f is None for f in files.values()):
            self._give_up(job["id"], "training/validation file no longer exists")
            return False
        bad = next((f for f in files.values() if f["status"] == "error"), None)
        if bad is not None:
            self._give_up(job["id"], f"file {bad['id']} could not be ingested: {bad['status_details']}")
            return False
        # stays queued until upload-time ingestion of its files is done
        return not any(f["status"] in ("uploaded", "ingesting") for f in files.values())

    def _submit(self, job: dict) -> None:
        attempt = job["attempts"] + 1
        job_dir = jobs_root() / job["id"]
        job_dir.mkdir(parents=True, exist_ok=True)
        files = self._files(job)
        reward_model_path = self._reward_model_path(job)
        if job["request"].get("reward_model") and reward_model_path is None:
            self._give_up(job["id"], f"reward model {job['request']['reward_model']!r} is no longer registered")
            return
        heldout = None
        if files.get("validation_file"):
            heldout = heldout_from_validation(Path(files["validation_file"]["path"]), job_dir / "heldout.jsonl")
        pipeline = pipeline_for_job(job, {k: f["path"] for k, f in files.items()}, job_dir, self.store.url,
                                    REPO_ROOT / self.cfg.pipeline_template,
                                    dataset=reusable_dataset(files["training_file"], job["request"]["base_model"]),
                                    reward_model_path=reward_model_path, heldout=heldout)
        config_path = job_dir / "pipeline.yaml"
        config_path.write_text(yaml.safe_dump(pipeline, sort_keys=False))
        submission_id = f"{job['id']}-a{attempt}"
        # claim first (locked queued -> running): a cancel that got in first means nothing is submitted
        if not self.store.claim(job["id"], f"attempt {attempt} submitted as Ray job {submission_id}",
                                ray_submission_id=submission_id, attempts=attempt, reported=None):
            return
        self.client.submit_job(
            entrypoint=f"{sys.executable} -m jobs.pipeline --config {config_path}",
            submission_id=submission_id,
            entrypoint_num_cpus=self.cfg.job_num_cpus,
            runtime_env={"env_vars": {"PYTHONPATH": str(REPO_ROOT), "RAYALIGN_HOME": str(rayalign_home()),
                                      "RAY_AUTH_MODE": "disabled", "TOKENIZERS_PARALLELISM": "false"}},
            metadata={"rayalign_job_id": job["id"], "tenant": job["tenant"], "attempt": str(attempt)},
        )

    def _reward_model_path(self, job: dict) -> str | None:
        """A ppo job's reward model: the newest registered version of the tenant's model of that name."""
        name = job["request"].get("reward_model")
        if not name:
            return None
        from app.registry.store import Registry

        views = Registry(self.store.url).list(job["tenant"], name=name)
        return max(views, key=lambda v: v.version).uri if views else None

    def _poll(self, job: dict) -> None:
        sid = job["ray_submission_id"]
        ray_status = str(self.client.get_job_status(sid).value) if sid else "FAILED"
        if ray_status not in _DONE:
            if job["cancel_requested"]:
                self.client.stop_job(sid)
            return
        self._record_usage(job, sid)
        fresh = self.store.get_job(None, job["id"])  # the job may have reported while we looked
        for event in exit_events(ray_status, fresh["reported"], fresh["cancel_requested"], fresh["attempts"],
                                 self.cfg.max_attempts):
            message = {"preempt": f"Ray job {sid} ended {ray_status} without reporting; resumes from "
                                  f"{fresh['checkpoint_path'] or 'the start'}",
                       "requeue": f"attempt {fresh['attempts'] + 1} of {self.cfg.max_attempts}"}.get(event, "")
            self.store.apply(job["id"], event, message)

    def _record_usage(self, job: dict, sid: str) -> None:
        """The ended attempt's reserved CPU/GPU time, tokens trained and estimated cost (``app.jobs_api.usage``)."""
        import json

        from app.jobs_api.usage import job_usage, reserved, tokens_trained

        try:
            info = self.client.get_job_info(sid)
            wall = max(0.0, ((info.end_time or 0) - (info.start_time or 0)) / 1000) if info.start_time else 0.0
            config = jobs_root() / job["id"] / "pipeline.yaml"
            cpus, gpus = reserved(yaml.safe_load(config.read_text()) if config.exists() else {}, self.cfg.job_num_cpus)
            fresh = self.store.get_job(None, job["id"])
            previous = json.loads(fresh["usage"]) if fresh.get("usage") else None
            usage = job_usage(wall, cpus, gpus, tokens_trained(fresh["checkpoint_path"]), self.cfg.usd_per_cpu_hour,
                              self.cfg.gpu_type, previous)
            self.store.update(job["id"], usage=json.dumps(usage))
        except Exception:  # noqa: BLE001 - accounting must never block a job's outcome
            log.exception("usage of job %s could not be recorded", job["id"])

    def _ingest_files(self) -> None:
        """Uploads become dataset artifacts: each is ingested by its own Ray job (validate, dedup, contamination,
        tokenize, pack with ``cfg.upload_ingest``); the file then reads ``processed`` with its ``dataset_id``."""
        for f in self.store.list_files(statuses={"ingesting"}, limit=1000):
            try:
                self._poll_ingest(f)
            except Exception:  # noqa: BLE001 - one file's trouble must not stop the jobs' polling
                log.exception("ingestion of %s: polling failed; retried next tick", f["id"])
        room = self.cfg.max_concurrent_ingests - len(self.store.list_files(statuses={"ingesting"}, limit=1000))
        waiting = sorted(self.store.list_files(statuses={"uploaded"}, limit=1000), key=lambda f: f["created_at"])
        for f in waiting[: max(0, room)]:  # oldest first, never more than the bound at once
            try:
                self._submit_ingest(f)
            except Exception:  # noqa: BLE001
                log.exception("ingestion of %s: submit failed; retried next tick", f["id"])

    def _submit_ingest(self, f: dict) -> None:
        from app.jobs_api.uploads import guess_record_type

        path = Path(f["path"])
        try:
            record_type = guess_record_type(path, f["format"])
        except Exception as exc:  # noqa: BLE001 - an unreadable file is the uploader's problem, not the runner's
            self.store.update_file(f["id"], status="error", status_details=f"cannot read {f['filename']}: "
                                                                          f"{type(exc).__name__}")
            return
        overrides = [f"sources=[{{path: '{path}', input_format: auto}}]", f"record_type={record_type}",
                     f"name={f['id']}", f"output_dir={path.parent / 'datasets'}", "ray.address=auto"]
        submission_id = f"{f['id']}-ingest"
        self.client.submit_job(
            entrypoint=f"{sys.executable} -m jobs.ingest --config {REPO_ROOT / self.cfg.upload_ingest} "
                       + " ".join(shlex.quote(o) for o in overrides),
            submission_id=submission_id, entrypoint_num_cpus=self.cfg.ingest_num_cpus,
            runtime_env={"env_vars": {"PYTHONPATH": str(REPO_ROOT), "RAYALIGN_HOME": str(rayalign_home()),
                                      "RAY_AUTH_MODE": "disabled", "TOKENIZERS_PARALLELISM": "false"}},
            metadata={"rayalign_file_id": f["id"], "tenant": f["tenant"]},
        )
        self.store.update_file(f["id"], status="ingesting", record_type=record_type, ingest_job=submission_id,
                               dataset_path=str(path.parent / "datasets" / f["id"]))

    def _poll_ingest(self, f: dict) -> None:
        from app.data.artifact import load_artifact

        status = str(self.client.get_job_status(f["ingest_job"]).value)
        if status not in _DONE:
            return
        if status == "SUCCEEDED":
            try:
                artifact = load_artifact(f["dataset_path"])
            except Exception as exc:  # noqa: BLE001 - recorded on the file
                self.store.update_file(f["id"], status="error", status_details=f"no dataset artifact: {exc}")
                return
            m = artifact.manifest
            details = (f"{m.get('rows_accepted')} of {m.get('rows_read')} rows kept (rejected "
                       f"{m.get('rows_rejected')}, duplicates {m.get('exact_dups_removed', 0)}+"
                       f"{m.get('near_dups_removed', 0)}, contaminated {m.get('contaminated_dropped', 0)}); "
                       f"{m.get('tokens')} tokens for {m.get('model_source')}")
            if not m.get("rows_accepted"):  # every record was quarantined: nothing to train on
                self.store.update_file(f["id"], status="error", status_details=f"no usable records: {details}")
                return
            self.store.update_file(f["id"], status="processed", dataset_id=artifact.id, status_details=details)
            return
        logs = self.client.get_job_logs(f["ingest_job"]) or ""
        reason = next((line for line in reversed(logs.strip().splitlines()) if line.strip()), status)
        self.store.update_file(f["id"], status="error", status_details=f"ingestion {status}: {reason[-500:]}")

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
