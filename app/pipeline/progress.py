"""The progress sink a pipeline run reports to: stage start/end, status events, step/loss, checkpoints, outcome.

The pipeline does not know who listens. ``ProgressSink`` itself ignores everything but logging (a standalone run);
the job API gives a store-backed sink (``app.jobs_api.progress.JobProgress``) and the console gives one that draws
stage lines (``app.console``); ``FanOut`` sends every call to several. This keeps the arrows pointing down: the
pipeline never imports the job store or the console.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)


class ProgressSink:
    """No-op base: override what you listen to."""

    #: whether the pipeline should follow training checkpoints and report them (costs a polling thread)
    follows_checkpoints: bool = False

    def stage_started(self, name: str) -> None:
        self.event("stage", f"{name} started")

    def stage_finished(self, name: str, status: str, seconds: float, detail: str = "") -> None:
        self.event("stage", f"{name} {status} in {seconds:.1f}s" + (f": {detail}" if detail else ""))

    def event(self, kind: str, message: str, **data: Any) -> None:
        log.info("[%s] %s", kind, message)

    def status(self, event: str, message: str = "", **fields: Any) -> None:
        """A state-machine event (checkpoint, resume, evaluate)."""

    def update(self, **fields: Any) -> None:
        """Progress fields: step, loss, tokens_per_sec, checkpoint_path."""

    def finish(self, outcome: str, **fields: Any) -> None:
        """The run's own verdict ('succeeded' | 'failed'), the last call."""


class FanOut(ProgressSink):
    """Forward every call to each sink in order."""

    def __init__(self, *sinks: ProgressSink):
        self.sinks = [s for s in sinks if s is not None]
        self.follows_checkpoints = any(s.follows_checkpoints for s in self.sinks)

    def stage_started(self, name: str) -> None:
        for s in self.sinks:
            s.stage_started(name)

    def stage_finished(self, name: str, status: str, seconds: float, detail: str = "") -> None:
        for s in self.sinks:
            s.stage_finished(name, status, seconds, detail)

    def event(self, kind: str, message: str, **data: Any) -> None:
        for s in self.sinks:
            s.event(kind, message, **data)

    def status(self, event: str, message: str = "", **fields: Any) -> None:
        for s in self.sinks:
            s.status(event, message, **fields)

    def update(self, **fields: Any) -> None:
        for s in self.sinks:
            s.update(**fields)

    def finish(self, outcome: str, **fields: Any) -> None:
        for s in self.sinks:
            s.finish(outcome, **fields)
