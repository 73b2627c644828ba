"""Store rows → OpenAI objects (``fine_tuning.job``, ``…job.event``, ``…job.checkpoint``, ``file``) + rayalign's extras.

OpenAI's fields keep OpenAI's meaning and value sets (``status`` is one of validating_files / queued / running /
succeeded / failed / cancelled); rayalign's finer state (checkpointing, evaluating, preempted), progress, priority,
usage and registry version sit under ``rayalign``. No server path leaves through a view: paths are dropped and free
text is scrubbed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from app.jobs_api.openai_jobs import OPENAI_STATUS, SOURCE_TO_BASE, TYPE_OF
from app.serve.errors import scrub_paths


def ts(value: str | None) -> int | None:
    return int(datetime.fromisoformat(value).timestamp()) if value else None


def job_view(job: dict[str, Any]) -> dict[str, Any]:
    import json

    req = job["request"]
    oa = req.get("openai") or {}
    method = oa.get("method") or {"type": TYPE_OF.get(req["method"], req["method"])}
    kind = method.get("type")
    given = ((method.get(kind) or {}).get("hyperparameters") if isinstance(method.get(kind), dict) else None) or {}
    hyper = {k: given.get(k, "auto") for k in ("n_epochs", "batch_size", "learning_rate_multiplier")}
    usage = json.loads(job["usage"]) if job.get("usage") else None
    status = OPENAI_STATUS[job["status"]]
    error = None
    if job["status"] == "failed":
        error = {"code": "job_failed", "message": scrub_paths(job["error"] or "the job failed"), "param": None}
    return {
        "id": job["id"], "object": "fine_tuning.job", "created_at": ts(job["created_at"]),
        "finished_at": ts(job.get("finished_at")), "model": oa.get("model") or SOURCE_TO_BASE.get(req["base_model"], req["base_model"]),
        "fine_tuned_model": job["fine_tuned_model"] if job["status"] == "succeeded" else None,
        "organization_id": job["tenant"], "result_files": [], "status": status,
        "training_file": req["training_file"], "validation_file": req.get("validation_file"),
        "hyperparameters": hyper, "method": method, "seed": oa.get("seed") if oa.get("seed") is not None
        else req.get("hyperparameters", {}).get("seed", 0),
        "trained_tokens": (usage or {}).get("tokens_trained") if status == "succeeded" else None,
        "error": error, "estimated_finish": None, "integrations": None, "metadata": oa.get("metadata"),
        "user_provided_suffix": req.get("suffix"),
        "rayalign": {"state": job["status"], "method": req["method"], "knobs": req.get("hyperparameters", {}),
                     "step": job["step"], "loss": job["loss"],
                     "tokens_per_sec": job["tokens_per_sec"], "attempts": job["attempts"],
                     "priority": job.get("priority") or "normal", "cancel_requested": bool(job["cancel_requested"]),
                     "registry": {"name": job.get("registry_name"), "version": job.get("registry_version")},
                     "usage": usage, "ignored": oa.get("integrations") or []},
    }


def event_view(row: dict[str, Any]) -> dict[str, Any]:
    level = "error" if row["message"].startswith("failed") else "warn" if row["kind"] == "warning" else "info"
    return {"id": f"ftevent-{row['seq']}", "object": "fine_tuning.job.event", "created_at": ts(row["created_at"]),
            "level": level, "message": scrub_paths(row["message"]), "type": "metrics" if row["kind"] == "metrics" else "message",
            "data": {k: v for k, v in (row["data"] or {}).items() if "path" not in k} or None}


def checkpoint_view(row: dict[str, Any], job: dict[str, Any]) -> dict[str, Any]:
    model = job["fine_tuned_model"] or f"{job['id']}"
    return {"id": f"ftckpt-{row['seq']}", "object": "fine_tuning.job.checkpoint", "created_at": ts(row["created_at"]),
            "fine_tuned_model_checkpoint": f"{model}:ckpt-step-{row['step']}", "fine_tuning_job_id": job["id"],
            "step_number": row["step"], "metrics": {"step": float(row["step"]), "train_loss": row["loss"]}}


def file_view(row: dict[str, Any]) -> dict[str, Any]:
    """OpenAI's file object; rayalign's ingestion state (uploaded → ingesting → processed | error) under rayalign."""
    status = {"ingesting": "uploaded"}.get(row["status"], row["status"])
    return {"id": row["id"], "object": "file", "bytes": row["bytes"], "created_at": ts(row["created_at"]),
            "filename": row["filename"], "purpose": row.get("purpose") or "fine-tune", "status": status,
            "status_details": scrub_paths(row["status_details"]) if row["status_details"] else None, "expires_at": None,
            "rayalign": {"state": row["status"], "rows": row["rows"], "sha256": row["sha256"],
                         "record_type": row["record_type"], "dataset_id": row["dataset_id"]}}


def page(items: list[dict[str, Any]], limit: int) -> dict[str, Any]:
    """A cursor page: ``limit`` items, ``has_more`` when one more was fetched (callers fetch limit + 1)."""
    return {"object": "list", "data": items[:limit], "has_more": len(items) > limit}
