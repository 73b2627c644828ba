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
        """Record the job's own verdict; the runner turns it into succeeded/failed when the Ray job ends."""
        self.store.update(self.job_id, reported=outcome, **fields)
        self.event("outcome", outcome, **{k: v for k, v in fields.items() if v is not None})


def job_progress(link: JobLink) -> ProgressSink | None:
    """The store-backed sink when the run belongs to a job, else None."""
    return JobProgress(link) if link.job_id else None
