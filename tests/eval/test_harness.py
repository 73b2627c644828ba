"""lm-eval as the GSM8K runner (local task YAML, the adapter via peft=, as a Ray task) on the tiny model: its
generations equal the project's own runner's on the same prompts, and its per-item exact match is compared with
the project's scorer. The SmolLM2 comparison is in benchmarks/eval_gates.py (--harness)."""

from __future__ import annotations

import json

import pytest

from tests.eval.conftest import make_tiny_adapter

pytestmark = pytest.mark.ray


def test_lm_eval_gsm8k_matches_the_project_runner(ray_local, tiny_model_dir, tiny_eval_data, tmp_path):
    from app.config.eval import EvalConfig
    from app.eval.harness import agreement, harness_task, run_harness_gsm8k
    from app.eval.scorer import AdapterScorer

    adapter = make_tiny_adapter(tiny_model_dir, tmp_path / "qv", 0.05, targets=("q_proj", "v_proj"))
    cfg = EvalConfig.model_validate({"model": {"source": "tiny:llama"}, "data": {"heldout": str(tiny_eval_data["qa"]),
                                     "task_limit": 3}, "generation": {"task_max_new_tokens": 6, "batch_size": 3},
                                     "ray": {"num_cpus": 2}})
    task = harness_task(tiny_eval_data["qa"], 6)
    assert task["dataset_kwargs"]["data_files"] == {"test": str(tiny_eval_data["qa"])}
    assert task["generation_kwargs"]["max_gen_toks"] == 6 and task["num_fewshot"] == 0
    out = run_harness_gsm8k(cfg, str(adapter))
    scorer = AdapterScorer(str(tiny_model_dir), str(adapter), 96)
    questions = [json.loads(line)["question"] for line in tiny_eval_data["qa"].read_text().splitlines()[:3]]
    for variant in ("base", "adapter"):
        run = out[variant]
        assert run["n"] == 3 and [r["question"] for r in run["rows"]] == questions  # the file's first items
        assert set(run["lm_eval"]) == {"strict-match", "flexible-extract"}
        ours = scorer.generate([[{"role": "user", "content": q}] for q in questions], 6, variant)
        assert [r["response"].strip() for r in run["rows"]] == ours  # same prompt, template and greedy decoding
        agree = agreement(run["rows"], "strict-match")
        assert agree["items"] == 3 and agree["agree"] + len(agree["differ_doc_ids"]) == 3
