"""Scheduler order (pure): priority classes with aging, per-tenant running limits; and atomic job transitions."""

from __future__ import annotations

import threading

import pytest


def job(i: int, t: float, priority: str = "normal", tenant: str = "a") -> dict:
    return {"id": f"j{i:04d}", "tenant": tenant, "priority": priority, "created_at": t}


def simulate(aging_s: float, ticks: int, backlog: int = 3) -> int | None:
    """One slot, every job takes one tick; one high job arrives every tick (the queue never drains of high work).
    Returns the tick at which the low job (arrived at t=0) starts, or None if it never does."""
    from app.jobs_api.schedule import pick

    queued = [job(0, 0.0, "low")] + [job(i, 0.0, "high") for i in range(1, backlog + 1)]
    n = backlog + 1
    for tick in range(ticks):
        now = float(tick)
        queued.append(job(n, now, "high"))
        n += 1
        chosen = pick(queued, {}, 1, now, aging_s, lambda _: None)
        if chosen[0]["priority"] == "low":
            return tick
        queued.remove(chosen[0])
    return None


def test_low_priority_starts_within_its_aging_bound_while_high_jobs_keep_arriving():
    aging_s, backlog = 10.0, 3
    started = simulate(aging_s, ticks=500, backlog=backlog)
    # it outranks every high job that arrives after 2·aging_s; the ones before (backlog + 2·aging_s arrivals) go first
    bound = backlog + 2 * aging_s + 1
    assert started is not None and started <= bound, (started, bound)
    assert simulate(aging_s=1e12, ticks=500, backlog=backlog) is None  # without aging it starves (the old FIFO
    # would not starve it, but it had no priorities at all: a high job could not overtake anything)


def test_rank_and_ties():
    from app.jobs_api.schedule import pick, rank

    assert rank(job(1, 0.0, "high"), 0.0, 60) == 2 and rank(job(2, 0.0, "low"), 120.0, 60) == 2
    older, newer = job(1, 0.0), job(2, 5.0)
    assert pick([newer, older], {}, 1, 5.0, 1e9, lambda _: None) == [older]


def test_tenant_at_its_running_limit_is_skipped_not_blocking_others():
    from app.jobs_api.schedule import pick

    queued = [job(1, 0.0, "high", "greedy"), job(2, 1.0, "high", "greedy"), job(3, 2.0, "low", "calm")]
    limits = {"greedy": 1}
    chosen = pick(queued, {"greedy": 1}, 2, 3.0, 300, limits.get)
    assert [j["id"] for j in chosen] == ["j0003"]
    chosen = pick(queued, {}, 3, 3.0, 300, limits.get)
    assert [j["id"] for j in chosen] == ["j0001", "j0003"]


def test_transitions_are_atomic_under_concurrent_writers(tmp_path):
    """Eight threads start the same queued job at once: exactly one wins (BEGIN IMMEDIATE holds the lock from the
    read), the others get InvalidTransition; one 'running' event, attempts 1. Repeated over 10 jobs."""
    from app.jobs_api.states import InvalidTransition
    from app.jobs_api.store import JobStore

    store = JobStore(f"sqlite:///{tmp_path / 'jobs.db'}")
    for _ in range(10):
        created, _ = store.create_job("alpha", "lora", {"base_model": "tiny:llama", "training_file": "f"})
        barrier, wins, losses = threading.Barrier(8), [], []

        def start():
            barrier.wait()
            try:
                store.apply(created["id"], "start", "go", attempts=store.get_job(None, created["id"])["attempts"] + 1)
                wins.append(1)
            except InvalidTransition:
                losses.append(1)

        threads = [threading.Thread(target=start) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(wins) == 1 and len(losses) == 7, (wins, losses)
        running = [e for e in store.list_events(created["id"]) if e["message"].startswith("running")]
        assert len(running) == 1 and store.get_job(None, created["id"])["attempts"] == 1


def test_cancel_and_claim_cannot_both_win(tmp_path):
    from app.jobs_api.store import JobStore

    store = JobStore(f"sqlite:///{tmp_path / 'jobs.db'}")
    job_, _ = store.create_job("alpha", "lora", {"base_model": "tiny:llama", "training_file": "f"})
    assert store.request_cancel("alpha", job_["id"])["status"] == "cancelled"
    assert store.claim(job_["id"], "too late", ray_submission_id="x-a1", attempts=1) is False
    assert store.get_job(None, job_["id"])["ray_submission_id"] is None


@pytest.mark.parametrize("priority", ["high", "normal", "low"])
def test_priority_is_accepted_and_stored(api, priority):
    import io
    import json

    import openai

    url, _, _, app = api
    from tests.jobs_api.conftest import KEY_A

    c = openai.OpenAI(base_url=f"{url}/v1", api_key=KEY_A, max_retries=0)
    rows = "".join(json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]})
                   + "\n" for _ in range(3)).encode()
    f = c.files.create(file=("t.jsonl", io.BytesIO(rows)), purpose="fine-tune")
    j = c.fine_tuning.jobs.create(model="tiny-llama", training_file=f.id, extra_body={"priority": priority})
    assert j.model_extra["rayalign"]["priority"] == priority
    assert app.state.store.get_job(None, j.id)["priority"] == priority
