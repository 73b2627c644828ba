"""Runner bookkeeping without Ray: suite rows from the held-out files, metrics -> ordered gates -> decision, report."""

from __future__ import annotations

import json

from app.config.eval import EvalConfig, GatesConfig
from app.core.gates import position_swap_stats
from app.eval.report import write_report
from app.eval.runner import build_suite_rows, evaluate_gates

METRICS = {"ppl_adapter": 4.0, "ppl_base": 5.0, "gsm8k_em_adapter": 0.30, "gsm8k_em_base": 0.25,
           "bench_acc_adapter": 0.60, "bench_acc_base": 0.62, "refusal_rate_adapter": 0.5, "refusal_rate_base": 0.5}


def test_suite_rows_follow_enabled_gates(tiny_eval_data):
    cfg = EvalConfig.model_validate({"data": {"heldout": str(tiny_eval_data["qa"]), "perplexity_limit": 3,
                                              "task_limit": 2, "benchmark": str(tiny_eval_data["hh"]),
                                              "benchmark_offset": 0, "benchmark_limit": 5,
                                              "redteam": str(tiny_eval_data["hh"]), "redteam_limit": 4},
                                     "judge": {"kind": "none"}})
    rows = build_suite_rows(cfg, GatesConfig())
    counts = {s: sum(r["suite"] == s for r in rows) for s in ("ppl", "task", "benchmark", "safety")}
    assert counts == {"ppl": 3, "task": 2, "benchmark": 5, "safety": 4}
    ppl_questions = [json.loads(r["payload"])["question"] for r in rows if r["suite"] == "ppl"]
    task_questions = [json.loads(r["payload"])["question"] for r in rows if r["suite"] == "task"]
    assert not set(ppl_questions) & set(task_questions)  # tail vs head of the file
    only_ppl = GatesConfig.model_validate({k: {"enabled": k == "perplexity"} for k in GatesConfig.model_fields})
    assert {r["suite"] for r in build_suite_rows(cfg, only_ppl)} == {"ppl"}


def test_stored_base_score_is_the_regression_reference(tmp_path):
    gates = GatesConfig()
    # live base accuracy 0.62 would pass (0.60 >= 0.57) but the stored base score 0.70 blocks (0.60 < 0.65)
    assert evaluate_gates(gates, METRICS, None, stored_bench_base=None).passed
    d = evaluate_gates(gates, METRICS, None, stored_bench_base=0.70)
    assert not d.passed and d.decided_by == "regression" and "stored base score 0.700" in d.reason
    md, png = write_report(tmp_path, "acme/math@v3", d, METRICS)
    text = md.read_text()
    assert "**BLOCKED** — decided by gate **regression**" in text and "| regression ⟵ decided | fail |" in text
    assert png.stat().st_size > 5_000


def test_unreliable_judge_is_advisory_by_default_and_reported(tmp_path):
    swap = position_swap_stats([True] * 8, [True] * 8)
    metrics = dict(METRICS, judge_win_rate=swap.win_rate, judge_consistency=swap.consistency)
    d = evaluate_gates(GatesConfig(), metrics, swap, None)
    judge = next(o for o in d.outcomes if o.name == "judge")
    assert d.passed and judge.status == "unreliable" and not judge.blocking
    strict = GatesConfig.model_validate({"judge": {"blocking": True}})
    assert evaluate_gates(strict, metrics, swap, None).decided_by == "judge"
    md, _ = write_report(tmp_path, "acme/math@v1", d, metrics)
    assert "judge unreliable: position consistency 0.00" in md.read_text()
