"""The job state machine: allowed and refused transitions, and what the end of a Ray job means."""

from __future__ import annotations

import pytest

from app.jobs_api.states import TERMINAL, InvalidTransition, JobStatus, exit_events, is_terminal, transition


def test_happy_path():
    s = JobStatus.QUEUED
    for event, want in [("start", "running"), ("checkpoint", "checkpointing"), ("resume", "running"),
                        ("evaluate", "evaluating"), ("succeed", "succeeded")]:
        s = transition(s, event)
        assert s.value == want
    assert is_terminal(s)


def test_preempt_requeue_resume():
    s = transition(transition(JobStatus.CHECKPOINTING, "preempt"), "requeue")
    assert s is JobStatus.QUEUED
    assert transition(s, "start") is JobStatus.RUNNING


@pytest.mark.parametrize("status", sorted(TERMINAL))
@pytest.mark.parametrize("event", ["start", "cancel", "preempt", "requeue", "succeed"])
def test_terminal_states_are_final(status, event):
    with pytest.raises(InvalidTransition):
        transition(status, event)


def test_failed_job_is_not_requeued():
    with pytest.raises(InvalidTransition):
        transition(JobStatus.FAILED, "requeue")
    with pytest.raises(InvalidTransition, match="unknown event"):
        transition(JobStatus.QUEUED, "explode")


@pytest.mark.parametrize(
    "ray_status,reported,cancel,attempts,want",
    [
        ("SUCCEEDED", "succeeded", False, 1, ["succeed"]),
        ("FAILED", "failed", False, 1, ["fail"]),           # the job said it failed: final
        ("FAILED", None, False, 1, ["preempt", "requeue"]),  # vanished without a word: preempted
        ("FAILED", None, False, 3, ["preempt", "fail"]),     # ... but not forever
        ("STOPPED", None, True, 1, ["cancel"]),
        ("SUCCEEDED", None, False, 1, ["fail"]),             # exit 0 without reporting is a bug, not a preemption
    ],
)
def test_exit_events(ray_status, reported, cancel, attempts, want):
    assert exit_events(ray_status, reported, cancel, attempts, max_attempts=3) == want
