"""The fine-tuning job life cycle as pure transitions (no I/O): every status change goes through ``transition``.

    queued ──start──▶ running ──checkpoint──▶ checkpointing ──resume──▶ running ──evaluate──▶ evaluating ──succeed──▶ succeeded
       ▲                 │  (any live state) ──fail──▶ failed      (any non-terminal) ──cancel──▶ cancelled
       └───requeue── preempted ◀──preempt── (running | checkpointing | evaluating)

A job whose process dies without reporting an outcome (SIGKILL, lost node, spot reclaim) is *preempted* and goes back
to the queue to resume from its last checkpoint; a job that reports an error is *failed* and stays failed.
"""

from __future__ import annotations

from enum import Enum


class JobStatus(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    CHECKPOINTING = "checkpointing"
    EVALUATING = "evaluating"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    PREEMPTED = "preempted"
    CANCELLED = "cancelled"


LIVE = frozenset({JobStatus.RUNNING, JobStatus.CHECKPOINTING, JobStatus.EVALUATING})
TERMINAL = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})

# event -> {from status: to status}
TRANSITIONS: dict[str, dict[JobStatus, JobStatus]] = {
    "start": {JobStatus.QUEUED: JobStatus.RUNNING},
    "checkpoint": {JobStatus.RUNNING: JobStatus.CHECKPOINTING, JobStatus.CHECKPOINTING: JobStatus.CHECKPOINTING},
    "resume": {JobStatus.CHECKPOINTING: JobStatus.RUNNING, JobStatus.RUNNING: JobStatus.RUNNING},
    "evaluate": {s: JobStatus.EVALUATING for s in LIVE},
    "succeed": {s: JobStatus.SUCCEEDED for s in LIVE},
    "fail": {s: JobStatus.FAILED for s in LIVE | {JobStatus.QUEUED, JobStatus.PREEMPTED}},
    "preempt": {s: JobStatus.PREEMPTED for s in LIVE},
    "requeue": {JobStatus.PREEMPTED: JobStatus.QUEUED},
    "cancel": {s: JobStatus.CANCELLED for s in set(JobStatus) - TERMINAL},
}


class InvalidTransition(ValueError):
    """An event that is not allowed from the job's current status (e.g. cancelling a finished job)."""


def transition(current: JobStatus | str, event: str) -> JobStatus:
    """The status after ``event`` happens to a job in ``current``; InvalidTransition if not allowed."""
    status = JobStatus(current)
    if event not in TRANSITIONS:
        raise InvalidTransition(f"unknown event {event!r} (known: {', '.join(TRANSITIONS)})")
    try:
        return TRANSITIONS[event][status]
    except KeyError:
        raise InvalidTransition(f"cannot {event} a job that is {status.value}") from None


def is_terminal(status: JobStatus | str) -> bool:
    return JobStatus(status) in TERMINAL


def exit_events(ray_status: str, reported: str | None, cancel_requested: bool, attempts: int, max_attempts: int) -> list[str]:
    """Events that follow the end of a job's Ray job, in order.

    ray_status: the Ray job status (SUCCEEDED | FAILED | STOPPED). reported: the outcome the job process wrote
    itself before exiting ('succeeded' | 'failed' | None when it died without a word). A process that vanished
    without reporting was preempted, and is re-queued while attempts remain.
    """
    if cancel_requested:
        return ["cancel"]
    if reported == "succeeded" and ray_status == "SUCCEEDED":
        return ["succeed"]
    if reported == "failed":
        return ["fail"]
    if ray_status == "SUCCEEDED":  # exited 0 without reporting: a bug in the entrypoint, not a preemption
        return ["fail"]
    if attempts >= max_attempts:
        return ["preempt", "fail"]
    return ["preempt", "requeue"]
