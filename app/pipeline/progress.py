"""How a pipeline run tells the job API where it is: status events, step/loss/tokens-per-second, checkpoints.

A standalone run (no job id) reports nothing. A job run writes straight into the job store; the last thing it does
is ``finish('succeeded' | 'failed')`` — a process that dies before that is treated as preempted by the runner.
"""

from __future__ import annotations

import logging
from typing import Any

from app.config.pipeline import JobLink

log = logging.getLogger(__name__)


class JobProgress:
    """Progress sink for one pipeline run; all methods are no-ops without a job id."""

    def __init__(self, link: JobLink):
        self.job_id = link.job_id
        self.store = None
        if link.job_id:
            from app.jobs_api.store import JobStore

            self.store = JobStore(link.db_url)

    def event(self, kind: str, message: str, **data: Any) -> None:
        log.info("[%s] %s", kind, message)
        if self.store:
            self.store.add_event(self.job_id, kind, message, data or None)

    def status(self, event: str, message: str = "", **fields: Any) -> None:
        """Apply a state-machine event (checkpoint, resume, evaluate) to the job; illegal ones are logged, not raised."""
        if not self.store:
            return
        from app.jobs_api.states import InvalidTransition

        try:
            self.store.apply(self.job_id, event, message, **fields)
        except InvalidTransition as exc:
            log.warning("job %s: %s", self.job_id, exc)

    def update(self, **fields: Any) -> None:
        if self.store:
            self.store.update(self.job_id, **fields)

    def finish(self, outcome: str, **fields: Any) -> None:
        """Record the job's own verdict; the runner turns it into succeeded/failed when the Ray job ends."""
        if self.store:
            self.store.update(self.job_id, reported=outcome, **fields)
            self.event("outcome", outcome, **{k: v for k, v in fields.items() if v is not None})
