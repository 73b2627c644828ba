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
    "epochs": "train.epochs",
}
# the DPO/reward stage configs share the training envelope (app.config.common.TrainingConfig): same keys, plus beta
PREFERENCE_HYPER_KEYS: dict[str, str] = {**HYPER_KEYS, "beta": "dpo.beta"}
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
                     template: Path, dataset: str | None = None, reward_model_path: str | None = None,
                     heldout: Path | None = None) -> dict[str, Any]:
    """The PipelineConfig (as a plain dict) that runs ``job``; validated by jobs/pipeline.py before anything runs.

    ``dataset``: the training file's artifact from upload-time ingestion, when it was tokenized for this job's base
    model; the job then trains on it instead of ingesting the file again. ``reward_model_path``: a ppo job's
    registered reward model folder (resolved by the runner from the request's ``reward_model``). ``heldout``: the
    request's validation file as {question, answer} rows (``heldout_from_validation``): the eval stage runs on it
    (held-out perplexity and exact match on the caller's own data) instead of the default held-out set.
    """
    req = job["request"]
    stage, method_overrides = METHOD_STAGES[req["method"]]
    keys = HYPER_KEYS if stage == "sft" else {"ppo": PPO_HYPER_KEYS, "dpo": PREFERENCE_HYPER_KEYS}.get(req["method"], HYPER_KEYS)
    given = req.get("hyperparameters", {})
    unknown = sorted(set(given) - set(keys))
    if unknown:  # an accepted knob that would be silently dropped is a bug: refuse it
        raise ValueError(f"hyperparameters.{unknown[0]}: not a knob of method {req['method']!r}")
    hyper = [f"{keys[k]}={v}" for k, v in sorted(given.items())]
    if "epochs" in given and "max_steps" not in given:
        hyper.append(f"{keys['max_steps']}=null")  # n_epochs decides the length, not the template's max_steps
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
        **({"eval": {"enabled": True, "overrides": base.get("eval", {}).get("overrides", [])
                     + [f"data.heldout={heldout}"]}} if heldout else {}),
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


def heldout_from_validation(src: Path, dst: Path, limit: int = 256) -> Path:
    """An uploaded validation file (OpenAI chat ``{messages}``, DPO ``{input, preferred_output}``, ``{prompt,
    chosen}`` or ``{question, answer}``) as the eval stage's {question, answer} JSONL: the last user turn and the
    reference answer of each record (at most ``limit``). ValueError naming the line when a record has neither."""
    import json

    rows = []
    with Path(src).open() as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            rec = json.loads(line)
            question, answer = _qa(rec)
            if not question or not answer:
                raise ValueError(f"validation_file line {lineno}: no user turn + reference answer to evaluate on")
            rows.append({"question": question, "answer": answer})
            if len(rows) >= limit:
                break
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return dst


def _qa(rec: dict[str, Any]) -> tuple[str | None, str | None]:
    def last(messages, role):
        return next((m.get("content") for m in reversed(messages or []) if isinstance(m, dict) and m.get("role") == role), None)

    if "question" in rec:
        return rec.get("question"), rec.get("answer")
    if "messages" in rec:
        msgs = rec["messages"]
        answer = last(msgs, "assistant")
        cut = max((i for i, m in enumerate(msgs) if isinstance(m, dict) and m.get("role") == "assistant"), default=len(msgs))
        return last(msgs[:cut], "user"), answer
    if "preferred_output" in rec:
        return last((rec.get("input") or {}).get("messages"), "user"), last(rec.get("preferred_output"), "assistant")
    if "chosen" in rec and isinstance(rec.get("prompt"), str):
        chosen = rec["chosen"]
        return rec["prompt"], chosen if isinstance(chosen, str) else last(chosen, "assistant")
    return None, None
