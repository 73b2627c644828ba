"""Runner bookkeeping without Ray: suite rows from the held-out files, metrics -> ordered gates -> decision, report."""

from __future__ import annotations

import json

from app.config.eval import EvalConfig, GatesConfig
import pytest

from app.core.gates import position_swap_stats
from app.eval.report import write_report
from app.eval.runner import ProductionRef, build_suite_rows, evaluate_gates, find_production, suite_key
from app.eval.suites import aggregate

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


def test_ppl_rows_carry_another_questions_answer(tiny_eval_data):
    cfg = EvalConfig.model_validate({"data": {"heldout": str(tiny_eval_data["qa"]), "perplexity_limit": 3, "task_limit": 2},
                                     "judge": {"kind": "none"}})
    only = {"perplexity", "conditioning"}
    gates = GatesConfig.model_validate({k: {"enabled": k in only} for k in GatesConfig.model_fields})
    ppl = [json.loads(r["payload"]) for r in build_suite_rows(cfg, gates)]
    # a cycle through the slice: every row gets the next row's answer, none keeps its own
    assert [p["other_answer"] for p in ppl] == [ppl[1]["answer"], ppl[2]["answer"], ppl[0]["answer"]]
    no_cond = GatesConfig.model_validate({k: {"enabled": k == "perplexity"} for k in GatesConfig.model_fields})
    assert all("other_answer" not in json.loads(r["payload"]) for r in build_suite_rows(cfg, no_cond))


def test_aggregate_margin_and_well_formed_rate():
    ppl = [{"id": i, "adapter_nll": 20.0, "base_nll": 30.0, "tokens": 10, "adapter_other_nll": 25.0,
            "base_other_nll": 40.0, "other_tokens": 10} for i in range(2)]
    task = [{"id": i, "adapter_correct": False, "base_correct": False, "adapter_well_formed": i == 0,
             "base_well_formed": False} for i in range(4)]
    m = aggregate([{"suite": "ppl", "result": json.dumps(r)} for r in ppl] +
                  [{"suite": "task", "result": json.dumps(r)} for r in task])["metrics"]
    assert m["cond_margin_adapter"] == pytest.approx(0.5) and m["cond_margin_base"] == pytest.approx(1.0)
    assert m["answer_format_adapter"] == 0.25 and m["answer_format_base"] == 0.0


MARGINS = dict(METRICS, cond_margin_adapter=0.63, cond_margin_base=0.627, answer_format_adapter=0.33,
               answer_format_base=0.0)


def test_conditioning_gate_blocks_an_adapter_that_ignores_the_question(tmp_path):
    assert evaluate_gates(GatesConfig(), MARGINS, None, None).passed
    collapsed = dict(MARGINS, cond_margin_adapter=0.51)  # 0.51 / 0.627 = 0.81 < 0.9
    d = evaluate_gates(GatesConfig(), collapsed, None, None)
    assert not d.passed and d.decided_by == "conditioning" and "ratio 0.813" in d.reason
    md, png = write_report(tmp_path, "acme/math@v2", d, collapsed)
    assert "decided by gate **conditioning**" in md.read_text() and png.stat().st_size > 5_000


def test_production_gates_compare_with_production_not_base(tmp_path):
    prod = ProductionRef(label="production acme/math@v1", metrics={"ppl_adapter": 3.8, "answer_format_adapter": 0.33,
                                                                 "version": 1.0})
    # ppl 4.0 is fine vs base (5.0) but 4.0 / 3.8 = 1.053 > 1.03 vs production
    d = evaluate_gates(GatesConfig(), MARGINS, None, None, prod)
    assert not d.passed and d.decided_by == "production_ppl" and "production acme/math@v1 3.800" in d.reason
    fmt = dict(MARGINS, ppl_adapter=3.8, answer_format_adapter=0.0)  # lost the answer format: 0 < 0.33 - 0.25
    d2 = evaluate_gates(GatesConfig(), fmt, None, None, prod)
    assert d2.decided_by == "production_format"
    assert evaluate_gates(GatesConfig(), dict(MARGINS, ppl_adapter=3.85), None, None, prod).passed
    # no production yet: reported as skipped, the base-relative gates decide alone
    first = evaluate_gates(GatesConfig(), MARGINS, None, None, ProductionRef(skip_reason="no production version yet"))
    skipped = next(o for o in first.outcomes if o.name == "production")
    assert first.passed and skipped.status == "skipped" and "no production version yet" in skipped.reason
    md, _ = write_report(tmp_path, "acme/math@v2", d, dict(MARGINS, ppl_production=3.8, answer_format_production=0.33))
    assert "| production_ppl ⟵ decided | fail |" in md.read_text()


def test_find_production_only_returns_a_comparable_reference(tmp_path):
    from app.registry import Registry
    from tests.registry.conftest import write_artifact

    reg = Registry(f"sqlite:///{tmp_path / 'reg.db'}")
    cfg = EvalConfig()
    key, sha = suite_key(cfg), "a" * 64
    v1 = reg.register_adapter("acme", "math", str(write_artifact(tmp_path / "v1", base_sha=sha))).version
    v2 = reg.register_adapter("acme", "math", str(write_artifact(tmp_path / "v2", base_sha=sha))).version
    assert "no production version" in find_production(reg, "acme", "math", v2, sha, key).skip_reason
    reg.record_eval("acme", "math", v1, {"ppl_adapter": 2.8, "answer_format_adapter": 0.3},
                    {"passed": True, "suite_key": key})
    reg.promote("acme", "math", v1, "production")
    ref = find_production(reg, "acme", "math", v2, sha, key)
    assert ref.metrics["ppl_adapter"] == 2.8 and ref.metrics["version"] == v1 and ref.label.endswith("math@v1")
    other_slice = suite_key(EvalConfig.model_validate({"data": {"perplexity_limit": 8}}))
    assert "not evaluated on this slice" in find_production(reg, "acme", "math", v2, sha, other_slice).skip_reason
    assert "trained on base" in find_production(reg, "acme", "math", v2, "b" * 64, key).skip_reason
    assert "production version itself" in find_production(reg, "acme", "math", v1, sha, key).skip_reason
    assert "no production version" in find_production(reg, "other", "math", v2, sha, key).skip_reason  # tenants
    reg.close()


def _records(n_task=8, em_adapter=0, em_base=0, refused_a=4, refused_b=4):
    ppl = [{"id": i, "adapter_nll": 20.0 + i % 3, "base_nll": 30.0 + i % 2, "tokens": 10, "adapter_other_nll": 33.0,
            "base_other_nll": 42.0, "other_tokens": 10} for i in range(16)]
    task = [{"id": i, "adapter_correct": i < em_adapter, "base_correct": i < em_base, "adapter_well_formed": True,
             "base_well_formed": False} for i in range(n_task)]
    bench = [{"id": i, "adapter_correct": i % 4 != 0, "base_correct": i % 4 != 0} for i in range(12)]
    safety = [{"id": i, "adapter_refused": i < refused_a, "base_refused": i < refused_b} for i in range(8)]
    return {"ppl": ppl, "task": task, "benchmark": bench, "safety": safety}


def test_interval_rule_marks_small_suites_underpowered_and_reports_n():
    records = _records(em_base=4)
    for r in records["task"]:  # 4/8 vs 4/8 on the other four questions: every pair discordant
        r["adapter_correct"] = not r["base_correct"]
    m = aggregate([{"suite": s, "result": json.dumps(r)} for s, rows in records.items() for r in rows])["metrics"]
    gates = GatesConfig.model_validate({"forgetting": {"enabled": False}})
    d = evaluate_gates(gates, m, None, None, None, records)
    by = {o.name: o for o in d.outcomes}
    # perplexity is clearly lower than base on every item: a pass with an interval below the bound
    assert by["perplexity"].status == "pass" and by["perplexity"].ci_high < by["perplexity"].bound
    # the interval around 0.5 is far wider than the 0.05 tolerance of the bound 0.45
    assert by["task"].status == "underpowered" and by["task"].n == 8 and by["task"].n_needed > 8
    assert d.passed and "underpowered" in d.reason
    strict = GatesConfig.model_validate({"forgetting": {"enabled": False}, "intervals": {"underpowered": "block"}})
    assert evaluate_gates(strict, m, None, None, None, records).decided_by == "task"
    point = GatesConfig.model_validate({"forgetting": {"enabled": False}, "intervals": {"enabled": False}})
    assert all(o.ci_low is None for o in evaluate_gates(point, m, None, None, None, records).outcomes)


def test_task_gate_with_a_bound_below_zero_is_decided_on_the_difference():
    # 0/8 vs 0/8: Newcombe's [-0.3244, 0.3244] shifted by the base's 0 is shown cut to [0, 0.3244]; the bound
    # 0 - 0.05 is below any rate, but the difference's -0.32 (the base's 0/8 may be a true 30%) leaves it underpowered
    records = _records()
    m = aggregate([{"suite": s, "result": json.dumps(r)} for s, rows in records.items() for r in rows])["metrics"]
    task = {o.name: o for o in evaluate_gates(GatesConfig.model_validate({"forgetting": {"enabled": False}}), m,
                                              None, None, None, records).outcomes}["task"]
    assert task.status == "underpowered" and task.bound == pytest.approx(-0.05)
    assert task.ci_low == 0.0 and task.ci_high == pytest.approx(0.3244, abs=1e-4)
    assert "decided on the paired difference adapter - base +0.000 [95% -0.324, +0.324] vs -0.050" in task.reason
    assert task.item_sd == pytest.approx(0.6488 / (2 * 1.959964) * 8 ** 0.5, abs=1e-3) and task.n_needed > 8


def test_interval_rule_blocks_a_confident_regression(tmp_path):
    # base answers 40/60 right, the adapter 0/60: worse than base - 0.05 with 95% confidence
    records = _records(n_task=60, em_adapter=0, em_base=40)
    m = aggregate([{"suite": s, "result": json.dumps(r)} for s, rows in records.items() for r in rows])["metrics"]
    d = evaluate_gates(GatesConfig.model_validate({"forgetting": {"enabled": False}}), m, None, None, None, records)
    assert not d.passed and d.decided_by == "task" and "[95% " in d.reason
    md, png = write_report(tmp_path, "acme/math@v9", d, m)
    text = md.read_text()
    assert "n needed (effect)" in text and "| task ⟵ decided | fail |" in text and png.stat().st_size > 5_000
