"""Which queued jobs start now: priority classes with aging, per-tenant running limits, a global slot count (pure).

A job's rank is its class (high 2, normal 1, low 0) plus the time it has waited divided by ``aging_s``: every
``aging_s`` seconds of waiting is worth one class. A low job that has waited ``2·aging_s`` outranks every high job
that arrives after that moment, so it cannot starve: it starts once the finitely many jobs that were ahead of it
then have started (``tests/jobs_api/test_schedule.py`` measures the bound with high jobs arriving every tick).
Ties go to the older job. A tenant at its ``max_running_jobs`` is skipped, not blocking the others.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Callable

RANK = {"high": 2.0, "normal": 1.0, "low": 0.0}


def _ts(value: str | float) -> float:
    return value if isinstance(value, (int, float)) else datetime.fromisoformat(value).timestamp()


def rank(job: dict[str, Any], now: float, aging_s: float) -> float:
    """Class + waited / aging_s (the job's ``priority`` None counts as normal)."""
    waited = max(0.0, now - _ts(job["created_at"]))
    return RANK[job.get("priority") or "normal"] + waited / aging_s


def pick(queued: list[dict[str, Any]], running_per_tenant: dict[str, int], slots: int, now: float, aging_s: float,
         limit_of: Callable[[str], int | None]) -> list[dict[str, Any]]:
    """The queued jobs to start, best first: highest rank, older first on ties; at most ``slots``; a tenant never
    past ``limit_of(tenant)`` running (None: no limit)."""
    order = sorted(queued, key=lambda j: (-rank(j, now, aging_s), _ts(j["created_at"]), j["id"]))
    counts = dict(running_per_tenant)
    chosen: list[dict[str, Any]] = []
    for job in order:
        if len(chosen) >= slots:
            break
        limit = limit_of(job["tenant"])
        if limit is not None and counts.get(job["tenant"], 0) >= limit:
            continue
        chosen.append(job)
        counts[job["tenant"]] = counts.get(job["tenant"], 0) + 1
    return chosen
