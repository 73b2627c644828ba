"""Usage and cost per job (reserved CPU/GPU time, tokens trained, price) and the per-tenant sum on GET /v1/usage."""

from __future__ import annotations

import json

import pytest

from app.config.paths import REPO_ROOT
from app.jobs_api.usage import job_usage, reserved, tokens_trained
from app.pipeline.job_config import pipeline_for_job


def job(method: str) -> dict:
    return {"id": "ftjob-0123456789abcdef0123", "tenant": "alpha",
            "request": {"base_model": "tiny:llama", "training_file": "f", "method": method, "hyperparameters": {},
                        "eval_config": {}, "reward_rule": "gsm8k" if method == "ppo" else None}}


def test_reserved_resources_come_from_the_generated_stage_config(tmp_path):
    template = REPO_ROOT / "configs/tiny/pipeline_job.yaml"
    sft = pipeline_for_job(job("lora"), {"training_file": "/f.jsonl"}, tmp_path, "sqlite:///x.db", template)
    assert reserved(sft, 0.0) == (1.0, 0.0)  # configs/tiny/sft_lora.yaml: 2 workers x 0.5 CPU
    sft["sft"]["overrides"] += ["scaling.num_workers=4", "scaling.use_gpu=true"]
    assert reserved(sft, 0.5) == (2.5, 4.0)
    ppo = pipeline_for_job(job("ppo"), {"training_file": "/q.jsonl"}, tmp_path, "sqlite:///x.db", template)
    assert reserved(ppo, 0.0) == (0.6, 0.0)  # configs/tiny/ppo_grpo.yaml: policy 0.5 + reward 0.1


def test_tokens_cost_and_attempts_add_up(tmp_path):
    from app.train.checkpoint import FORMAT_VERSION, MANIFEST

    (tmp_path / MANIFEST).write_text(json.dumps({"format": FORMAT_VERSION, "step": 3, "files": {}, "state": {
        "history": [{"step": 1, "tokens": 100}, {"step": 2, "tokens": 120}, {"step": 3, "tokens": 80}]}}))
    assert tokens_trained(str(tmp_path)) == 300 and tokens_trained(None) == 0
    first = job_usage(3600.0, 1.0, 0.0, 0, usd_per_cpu_hour=0.05, gpu_type=None)
    both = job_usage(1800.0, 1.0, 2.0, 300, usd_per_cpu_hour=0.05, gpu_type="L4", previous=first)
    assert both["cpu_seconds"] == 5400 and both["gpu_seconds"] == 3600 and both["attempts"] == 2
    assert both["estimated_cost_usd"] == pytest.approx(1.5 * 0.05 + 1.0 * 0.85)  # L4: 0.85 USD/GPU-hour (planner)
    assert both["tokens_trained"] == 300


def test_usage_endpoint_sums_only_the_callers_jobs(api):
    _, a, b, app = api
    store = app.state.store
    for tenant, cpu in (("alpha", 10.0), ("alpha", 5.0), ("beta", 99.0)):
        j, _ = store.create_job(tenant, "lora", {"base_model": "tiny:llama", "training_file": "f", "method": "lora"})
        store.update(j["id"], usage=json.dumps(job_usage(cpu, 1.0, 0.0, 7, 3600.0, None)))
    mine = a.get("/v1/usage").json()
    assert mine["jobs"] == 2 and mine["cpu_seconds"] == 15.0 and mine["tokens_trained"] == 14
    assert mine["estimated_cost_usd"] == pytest.approx(15.0)
    assert b.get("/v1/usage").json()["cpu_seconds"] == 99.0
