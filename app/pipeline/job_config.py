"""Turn one job-API request into a pipeline config: which stages run, on which file, with which knobs.

The job API never builds training code itself: an API job *is* a pipeline run (``jobs/pipeline.py``) whose stages
come from the request's method, whose ingest reads the uploaded file, and whose run names are fixed by the job id,
so that a re-queued (preempted) job re-runs the same Ray Train run and resumes from its latest checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from app.config.loader import deep_merge, read_yaml

# request hyperparameter -> key in the SFT/DPO stage config (app.config.sft / app.config.dpo)
HYPER_KEYS: dict[str, str] = {
    "max_steps": "train.max_steps",
    "learning_rate": "optim.lr",
    "batch_size": "train.micro_batch_size",
    "lora_r": "lora.r",
    "checkpoint_every": "checkpoint.every_steps",
    "seed": "train.seed",
}
# the DPO/reward stage configs share the training envelope (app.config.common.TrainingConfig): same keys
PREFERENCE_HYPER_KEYS: dict[str, str] = dict(HYPER_KEYS)
# the same knobs in the PPO stage config (app.config.ppo): a "step" is one rollout + update iteration
PPO_HYPER_KEYS: dict[str, str] = {
    "max_steps": "run.iterations",
    "learning_rate": "algo.lr",
    "batch_size": "run.prompts_per_iteration",
    "lora_r": "lora.r",
    "checkpoint_every": "run.checkpoint_every",
    "seed": "run.seed",
}
# stage config of the methods whose config is not the template's preference.config (the DPO one); smoke-sized like it
METHOD_CONFIGS: dict[str, str] = {"reward": "configs/tiny/reward_lora.yaml", "ppo": "configs/tiny/ppo_grpo.yaml"}
# request method -> (stage that trains, overrides that select the method there)
METHOD_STAGES: dict[str, tuple[str, list[str]]] = {
    "sft": ("sft", ["method=lora"]),  # hosted APIs' "sft" is adapter SFT; full weights are not served multi-tenant
    "lora": ("sft", ["method=lora"]),
    "qlora": ("sft", ["method=qlora"]),
    "cpt": ("sft", ["method=lora", "train.objective=cpt"]),
    "dpo": ("preference", []),
    "ppo": ("preference", []),
    "reward": ("preference", []),
}


def pipeline_for_job(job: dict[str, Any], file_paths: dict[str, str], job_dir: Path, db_url: str,
                     template: Path, dataset: str | None = None, reward_model_path: str | None = None) -> dict[str, Any]:
    """The PipelineConfig (as a plain dict) that runs ``job``; validated by jobs/pipeline.py before anything runs.

    ``dataset``: the training file's artifact from upload-time ingestion, when it was tokenized for this job's base
    model; the job then trains on it instead of ingesting the file again. ``reward_model_path``: a ppo job's
    registered reward model folder (resolved by the runner from the request's ``reward_model``).
    """
    req = job["request"]
    stage, method_overrides = METHOD_STAGES[req["method"]]
    keys = {"sft": HYPER_KEYS, "ppo": PPO_HYPER_KEYS}.get(req["method"] if stage != "sft" else "sft", PREFERENCE_HYPER_KEYS)
    hyper = [f"{keys[k]}={v}" for k, v in sorted(req.get("hyperparameters", {}).items()) if k in keys]
    run = [f"ray.run_name={job['id']}-{stage}", f"ray.storage_path={job_dir / 'runs'}"]
    base = read_yaml(template)
    ingest_over = [f"sources=[{{path: '{file_paths['training_file']}', input_format: auto}}]",
                   f"output_dir={job_dir / 'dataset'}", f"name={job['id']}"]
    extra: dict[str, Any] = {
        "name": job["id"],
        "model": {"source": req["base_model"]},
        "ray": {"address": "auto"},
        "ingest": {"overrides": base.get("ingest", {}).get("overrides", []) + ingest_over},
        "eval": {"enabled": bool(req.get("eval_config", {}).get("enabled", base.get("eval", {}).get("enabled", True)))},
        # registered under the job's tenant: /v1/models lists only the caller's tenant
        "promote": {"name": f"ft-{(req.get('suffix') or job['id'].split('-', 1)[1]).lower()}", "tenant": job["tenant"]},
        "serve": {"enabled": False},
        "report_dir": str(job_dir / "report"),
        "job": {"job_id": job["id"], "db_url": db_url},
        "dataset": dataset,
    }
    if stage == "sft":
        sft_over = base.get("sft", {}).get("overrides", []) + hyper + run
        extra["sft"] = {"overrides": sft_over + method_overrides}
        extra["preference"] = {"enabled": False}
    else:
        extra["sft"] = {"enabled": False}  # preference methods start from the base model (or a given adapter)
        overrides = base.get("preference", {}).get("overrides", []) + hyper + run
        extra["preference"] = {"enabled": True, "method": req["method"], "overrides": overrides}
        if req["method"] == "reward":
            extra["eval"] = {"enabled": False}  # the gates judge generated text; a reward model has its held-out accuracy
        if req["method"] in METHOD_CONFIGS:
            extra["preference"]["config"] = METHOD_CONFIGS[req["method"]]
        if req["method"] == "ppo":
            extra["ingest"] = {"enabled": False}  # load_prompts reads the uploaded {question, answer} JSONL itself
            extra["dataset"] = None
            extra["preference"]["overrides"] = (base.get("preference", {}).get("overrides", []) + hyper
                                                + [f"prompts.path={file_paths['training_file']}",
                                                   *ppo_reward_overrides(req, reward_model_path)])
    return deep_merge(base, extra)


def ppo_reward_overrides(req: dict[str, Any], reward_model_path: str | None) -> list[str]:
    """The request's reward source as PPO config keys: an RM (with a rule: logged beside it, weight 0) or a rule."""
    rule = req.get("reward_rule")
    if req.get("reward_model"):
        if not reward_model_path:
            raise ValueError(f"reward model {req['reward_model']!r} is no longer registered")
        return ([f"reward.kind=sum", f"reward.rule={rule}", "reward.rule_weight=0"] if rule else ["reward.kind=model"]) \
            + [f"reward.model_path={reward_model_path}"]
    return ["reward.kind=rule", f"reward.rule={rule}"] if rule else []
