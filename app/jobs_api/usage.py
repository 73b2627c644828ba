"""What a finished job used, and what it would cost: recorded by the runner when the job's Ray job ends.

    cpu_seconds    Σ attempts: Ray job wall time × CPUs reserved (driver + training workers from the stage config)
    gpu_seconds    Σ attempts: wall time × GPUs reserved (workers with use_gpu, or PPO's gpus_per_role × roles)
    tokens_trained Σ over the final checkpoint's per-step history of "tokens" (real, non-pad tokens of each step)
    estimated_cost_usd  cpu_hours × usd_per_cpu_hour + gpu_hours × the planner's price of ``gpu_type``
                        (app.plan.gpus.CATALOG: on-demand list prices, a ranking estimate, not a bill)

Reserved, not measured utilisation: what the job kept from other jobs. ``GET /v1/usage`` sums a tenant's jobs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def reserved(pipeline: dict[str, Any], entry_cpus: float) -> tuple[float, float]:
    """(CPUs, GPUs) a job's run holds: the driver plus its training stage's workers or PPO actors."""
    from app.config.paths import REPO_ROOT

    stage = pipeline.get("preference", {}) if pipeline.get("preference", {}).get("enabled") else pipeline.get("sft", {})
    config = stage.get("config")
    if not config:
        return entry_cpus, 0.0
    path = Path(config) if Path(config).is_absolute() else REPO_ROOT / config
    from app.config.loader import read_yaml

    section = "placement" if "ppo" in path.stem else "scaling"
    values = dict(read_yaml(path).get(section) or {})
    for o in stage.get("overrides", []):
        key, _, value = o.partition("=")
        if key.startswith(section + "."):
            values[key.split(".", 1)[1]] = value
    if section == "placement":
        from app.config.ppo import PlacementSpec

        p = PlacementSpec.model_validate(values)
        return entry_cpus + p.policy_cpus + p.reward_cpus, p.gpus_per_role * 2
    from app.config.common import ScalingSpec

    spec = ScalingSpec.model_validate(values)
    return entry_cpus + spec.num_workers * spec.cpus_per_worker, float(spec.num_workers if spec.use_gpu else 0)


def tokens_trained(checkpoint_path: str | None) -> int:
    from app.train.checkpoint import read_manifest

    manifest = read_manifest(Path(checkpoint_path)) if checkpoint_path else None
    history = (manifest or {}).get("state", {}).get("history") or []
    return int(sum(h.get("tokens", 0) or 0 for h in history))


def job_usage(wall_s: float, cpus: float, gpus: float, tokens: int, usd_per_cpu_hour: float, gpu_type: str | None,
              previous: dict[str, Any] | None = None) -> dict[str, Any]:
    """This attempt's usage added to the job's earlier attempts (a preempted job pays for every attempt)."""
    from app.plan.gpus import CATALOG

    prev = previous or {}
    cpu_s = prev.get("cpu_seconds", 0.0) + wall_s * cpus
    gpu_s = prev.get("gpu_seconds", 0.0) + wall_s * gpus
    gpu_price = CATALOG[gpu_type].usd_per_hour if gpu_type else 0.0
    cost = cpu_s / 3600 * usd_per_cpu_hour + gpu_s / 3600 * gpu_price
    return {"wall_seconds": round(prev.get("wall_seconds", 0.0) + wall_s, 3), "cpu_seconds": round(cpu_s, 3),
            "gpu_seconds": round(gpu_s, 3), "tokens_trained": max(tokens, prev.get("tokens_trained", 0)),
            "estimated_cost_usd": round(cost, 6), "attempts": prev.get("attempts", 0) + 1,
            "price_basis": {"usd_per_cpu_hour": usd_per_cpu_hour, "gpu_type": gpu_type, "usd_per_gpu_hour": gpu_price}}


def tenant_usage(jobs: list[dict[str, Any]]) -> dict[str, Any]:
    """Sums over a tenant's jobs that recorded usage (``GET /v1/usage``)."""
    import json

    rows = [(j, json.loads(j["usage"])) for j in jobs if j.get("usage")]
    total = {k: round(sum(u.get(k, 0) for _, u in rows), 6)
             for k in ("wall_seconds", "cpu_seconds", "gpu_seconds", "tokens_trained", "estimated_cost_usd")}
    return {"object": "usage", "jobs": len(rows), **total,
            "data": [{"job_id": j["id"], "status": j["status"], **u} for j, u in rows]}
