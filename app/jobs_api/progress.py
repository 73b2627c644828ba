"""The job store's progress sink: a pipeline run on behalf of a job-API job writes its progress into the store.

The job entrypoint gives it to the pipeline (``app.pipeline.progress.ProgressSink``); the last thing a run does is
``finish('succeeded' | 'failed')`` — a process that dies before that is treated as preempted by the runner.
"""

from __future__ import annotations

import logging
from typing import Any

from app.config.pipeline import JobLink
from app.jobs_api.states import InvalidTransition
from app.jobs_api.store import JobStore
from app.pipeline.progress import ProgressSink

log = logging.getLogger(__name__)


class JobProgress(ProgressSink):
    """Progress of one job: events, state transitions and fields go to the job store."""

    follows_checkpoints = True

    def __init__(self, link: JobLink):
        self.job_id = link.job_id
        self.store = JobStore(link.db_url)

    def event(self, kind: str, message: str, **data: Any) -> None:
        super().event(kind, message)
        self.store.add_event(self.job_id, kind, message, data or None)

    def status(self, event: str, message: str = "", **fields: Any) -> None:
        """Apply a state-machine event to the job; illegal ones are logged, not raised."""
        try:
            self.store.apply(self.job_id, event, message, **fields)
        except InvalidTransition as exc:
            log.warning("job %s: %s", self.job_id, exc)

    def update(self, **fields: Any) -> None:
        self.store.update(self.job_id, **fields)

    def finish(self, outcome: str, **fields: Any) -> None:
        """Record the job's own verdict; the runner turns it into succeeded/failed when the Ray job ends.

        A succeeded job's registered adapter (``fine_tuned_model`` = its registry name) becomes the job's
        ``ft:<base>:<tenant>:<suffix>:<id>`` model id, pinned to the registry version this run registered."""
        if fields.get("fine_tuned_model"):
            fields.update(self._registered(fields.pop("fine_tuned_model"), fields.get("adapter_path")))
        self.store.update(self.job_id, reported=outcome, **fields)
        self.event("outcome", outcome, **{k: v for k, v in fields.items() if v is not None})


    def _registered(self, name: str, adapter_path: str | None) -> dict[str, Any]:
        from pathlib import Path

        from app.jobs_api.openai_jobs import SOURCE_TO_BASE
        from app.registry.rollout import fine_tuned_model_id, set_alias
        from app.registry.store import Registry

        job = self.store.get_job(None, self.job_id)
        registry = Registry(self.store.url)
        views = registry.list(job["tenant"], name=name)
        if not views:
            return {"fine_tuned_model": None}
        real = str(Path(adapter_path).resolve()) if adapter_path else None
        view = next((v for v in views if real and v.uri == real), max(views, key=lambda v: v.version))
        req = job["request"]
        base = SOURCE_TO_BASE.get(req["base_model"], req["base_model"].replace(":", "-"))
        model_id = fine_tuned_model_id(base, job["tenant"], req.get("suffix"), job["id"])
        set_alias(registry, job["tenant"], model_id, name, view.version)  # what Serve resolves the ft: id to
        return {"registry_name": name, "registry_version": view.version, "fine_tuned_model": model_id}


def job_progress(link: JobLink) -> ProgressSink | None:
    """The store-backed sink when the run belongs to a job, else None."""
    return JobProgress(link) if link.job_id else None
