"""EleutherAI's lm-evaluation-harness (``lm-eval``) as the GSM8K runner, as a Ray task.

    out = run_harness_gsm8k(cfg, adapter_dir)      # EvalConfig: model, data.heldout, task_limit, generation
    out["adapter"]["lm_eval"]["strict-match"], out["adapter"]["project_em"], out["adapter"]["rows"][i]["response"]

The task is configs/eval/lm_eval/gsm8k_local.yaml (local JSON file, zero-shot, the model's chat template, greedy),
the model lm-eval's ``hf`` model on the resolved base folder, the adapter through its ``peft=`` argument. Every
logged response is also scored with the project's own GSM8K scorer (app.eval.answers.exact_match), so the two
scorers are compared item by item on the same generations (``agreement``).

What lm-eval cannot express here (why the custom runner in app.eval.suites stays; docs/registry-and-gates.md):
base and adapter from one model in memory (peft ``disable_adapter``) so the paired items share one load; the
question-conditioning margin (an answer scored after a *different* question); held-out answer perplexity on the
answer tokens only after a chat prompt; red-team replies scored by the phrase classifier and a reward model; and
production's stored metrics on the same slice.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from app.config.paths import REPO_ROOT
from app.eval.answers import exact_match

TASK_FILE = REPO_ROOT / "configs/eval/lm_eval/gsm8k_local.yaml"


def harness_task(data_file: str | Path, max_gen_toks: int, task_file: Path = TASK_FILE) -> dict[str, Any]:
    """The task YAML as a dict with the resolved data file and the generation budget filled in."""
    import yaml

    task = yaml.safe_load(task_file.read_text(encoding="utf-8"))
    task = copy.deepcopy(task)
    task["dataset_kwargs"]["data_files"] = {"test": str(data_file)}
    task["generation_kwargs"]["max_gen_toks"] = int(max_gen_toks)
    return task


def lm_eval_gsm8k(model_dir: str, adapter_dir: str | None, data_file: str, limit: int, max_gen_toks: int,
                  batch_size: int, threads: int | None = None) -> dict[str, Any]:
    """One lm-eval run (base when ``adapter_dir`` is None): metrics per filter + per-item responses and scores."""
    import lm_eval
    import torch
    from lm_eval.tasks import TaskManager

    if threads:
        torch.set_num_threads(threads)
    task = harness_task(data_file, max_gen_toks)
    args: dict[str, Any] = {"pretrained": model_dir, "dtype": "float32", "device": "cpu"}
    if adapter_dir:
        args["peft"] = adapter_dir
    res = lm_eval.simple_evaluate(model="hf", model_args=args, tasks=[task], limit=limit, batch_size=batch_size,
                                  apply_chat_template=True, log_samples=True, bootstrap_iters=0,
                                  task_manager=TaskManager(include_defaults=False), verbosity="WARNING")
    name = task["task"]
    metrics = {k.split(",", 1)[1]: float(v) for k, v in res["results"][name].items()
               if k.startswith("exact_match,") and isinstance(v, (int, float))}
    by_doc: dict[int, dict] = {}
    for s in res["samples"][name]:
        row = by_doc.setdefault(int(s["doc_id"]), {
            "doc_id": int(s["doc_id"]), "question": s["doc"]["question"], "answer": s["doc"]["answer"],
            "response": s["resps"][0][0]})
        row[s["filter"]] = bool(s["exact_match"])
    rows = [by_doc[k] for k in sorted(by_doc)]
    for row in rows:
        row["project_em"] = exact_match(row["response"], row["answer"])
    return {"lm_eval": metrics, "n": len(rows), "rows": rows,
            "project_em": sum(r["project_em"] for r in rows) / max(len(rows), 1)}


def agreement(rows: list[dict], filter_name: str) -> dict[str, Any]:
    """Per-item agreement of lm-eval's filter ``filter_name`` with the project's scorer, and the items that differ."""
    differ = [r["doc_id"] for r in rows if bool(r.get(filter_name)) != bool(r["project_em"])]
    return {"filter": filter_name, "items": len(rows), "agree": len(rows) - len(differ), "differ_doc_ids": differ}


def run_harness_gsm8k(cfg, adapter_dir: str | None, variants: tuple[str, ...] = ("base", "adapter")) -> dict[str, Any]:
    """Both variants as Ray tasks (one at a time: each takes the configured CPUs), on data.heldout's first
    data.task_limit items with generation.task_max_new_tokens."""
    import ray

    from app.eval.heldout import resolve_data_path
    from app.models.loader import resolve_model

    model_dir = str(resolve_model(cfg.model).path)
    data_file = str(resolve_data_path(cfg.data.heldout))
    cpus = cfg.ray.num_cpus or 1
    remote = ray.remote(num_cpus=cpus)(lm_eval_gsm8k)
    out: dict[str, Any] = {}
    for variant in variants:
        adapter = adapter_dir if variant == "adapter" else None
        out[variant] = ray.get(remote.remote(model_dir, adapter, data_file, cfg.data.task_limit,
                                             cfg.generation.task_max_new_tokens, cfg.generation.batch_size, cpus))
    return out
