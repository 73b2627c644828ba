"""The base model's per-item results are cached per (base SHA, suite hash) and merged back item by item; the
no-regression gates pair with production's per-item records; a low production format rate still leaves a bound."""

from __future__ import annotations

import json

import pytest

from app.config.eval import EvalConfig, GatesConfig
from app.core import gates as G
from app.eval import basecache
from app.eval.runner import ProductionRef, evaluate_gates
from app.eval.suites import suite_metrics

ROWS = [{"suite": "ppl", "payload": json.dumps({"id": i, "question": f"q{i}", "answer": f"a{i}"})} for i in range(3)]


def _records(n=3):
    return {"ppl": [{"id": i, "adapter_nll": 10.0 + i, "base_nll": 12.0 + i, "tokens": 5, "sec": 0.1}
                    for i in range(n)],
            "task": [{"id": i, "question": f"q{i}", "adapter_answer": "x", "base_answer": "#### 1",
                      "adapter_correct": False, "base_correct": True, "adapter_well_formed": False,
                      "base_well_formed": True} for i in range(n)]}


def test_suite_hash_names_everything_that_decides_the_base_results():
    cfg = EvalConfig()
    key = basecache.suite_hash(ROWS, cfg, None)
    assert key == basecache.suite_hash([dict(r) for r in ROWS], EvalConfig(), None)  # deterministic
    others = [basecache.suite_hash(ROWS[:2], cfg, None), basecache.suite_hash(ROWS[::-1], cfg, None),
              basecache.suite_hash(ROWS, EvalConfig.model_validate({"data": {"max_length": 128}}), None),
              basecache.suite_hash(ROWS, EvalConfig.model_validate({"generation": {"task_max_new_tokens": 9}}), None),
              basecache.suite_hash(ROWS, EvalConfig.model_validate({"generation": {"batch_size": 3}}), None),
              basecache.suite_hash(ROWS, EvalConfig.model_validate({"generation": {"rows_per_call": 3}}), None),
              basecache.suite_hash(ROWS, cfg, "/models/rm")]
    assert len({key, *others}) == 8


def test_cache_round_trip_and_merge_restore_the_paired_records(tmp_path):
    full = _records()
    sha, key = "b" * 64, "k" * 64
    assert basecache.load(tmp_path, sha, key) is None
    basecache.save(tmp_path, sha, key, full)
    assert basecache.load(tmp_path, "c" * 64, key) is None  # another base: never the cached one
    cached = basecache.load(tmp_path, sha, key)
    assert cached["ppl"][2] == {"base_nll": 14.0}
    adapter_only = {s: [{k: v for k, v in r.items() if not k.startswith("base_")} for r in rows]
                    for s, rows in full.items()}
    merged = basecache.merge(adapter_only, cached)
    assert merged == full
    assert suite_metrics(merged)["ppl_base"] == pytest.approx(suite_metrics(full)["ppl_base"])
    with pytest.raises(KeyError, match="no ppl item 3"):
        basecache.merge({"ppl": [{"id": 3, "adapter_nll": 1.0, "tokens": 1}]}, cached)
    with pytest.raises(ValueError, match="no base_"):
        basecache.save(tmp_path, sha, "x" * 64, adapter_only)


def test_low_production_format_rate_can_still_fail():
    # production's well-formed rate 0.2 < max_format_drop 0.25: the old absolute bound was 0.2 - 0.25 < 0, so no
    # adapter could ever fail; the bound is now 0.2 - min(0.25, 0.5 x 0.2) = 0.1
    assert G.format_drop(0.25, 0.5, 0.2) == pytest.approx(0.1)
    assert G.format_drop(0.25, 0.5, 0.9) == pytest.approx(0.25)
    n = 60
    records = {"task": [{"id": i, "adapter_correct": False, "base_correct": False, "adapter_well_formed": False,
                         "base_well_formed": False} for i in range(n)],
               "ppl": [{"id": i, "adapter_nll": 10.0, "base_nll": 12.0, "tokens": 5} for i in range(n)]}
    m = suite_metrics(records)
    gates = GatesConfig.model_validate({k: {"enabled": k == "production"} for k in GatesConfig.model_fields
                                        if k != "intervals"})
    prod = ProductionRef(label="production acme/math@v1",
                         metrics={"ppl_adapter": m["ppl_adapter"], "answer_format_adapter": 0.2, "version": 1.0})
    fmt = next(o for o in evaluate_gates(gates, m, None, None, prod, records).outcomes if o.name == "production_format")
    assert fmt.status == "fail" and fmt.bound == pytest.approx(0.1) and fmt.ci_high < 0.1
    point = GatesConfig.model_validate({**{k: {"enabled": k == "production"} for k in GatesConfig.model_fields
                                           if k != "intervals"}, "intervals": {"enabled": False}})
    assert evaluate_gates(point, m, None, None, prod).decided_by == "production_format"


def test_production_gate_pairs_with_production_item_records():
    # candidate and production differ item to item by a lot, but by the same 1% on every item: paired, the
    # interval is tight and passes; against production's stored mean alone it is wide (underpowered)
    n = 40
    prod_nll = [5.0 + 4.0 * (i % 5) for i in range(n)]
    cand = [{"id": i, "adapter_nll": x + 0.05, "base_nll": x + 1.0, "tokens": 10} for i, x in enumerate(prod_nll)]
    items = {"ppl": [{"id": i, "adapter_nll": x, "tokens": 10} for i, x in enumerate(prod_nll)]}
    records = {"ppl": cand}
    m = suite_metrics(records)
    import math
    prod_ppl = math.exp(sum(prod_nll) / (10 * n))
    gates = GatesConfig.model_validate({k: {"enabled": k == "production"} for k in GatesConfig.model_fields
                                        if k != "intervals"})
    ref = {"ppl_adapter": prod_ppl, "version": 1.0}
    paired = evaluate_gates(gates, m, None, None, ProductionRef("production v1", ref, items=items), records)
    alone = evaluate_gates(gates, m, None, None, ProductionRef("production v1", ref), records)
    p, a = (next(o for o in d.outcomes if o.name == "production_ppl") for d in (paired, alone))
    assert p.status == "pass" and p.ci_high - p.ci_low < 1e-6 + 0.2 * (a.ci_high - a.ci_low)
    assert p.value == pytest.approx(m["ppl_adapter"])
    assert a.status == "underpowered"
    # production's records on other tokens (another tokenizer / slice): not paired, falls back on the constant
    other = {"ppl": [dict(r, tokens=11) for r in items["ppl"]]}
    fallback = evaluate_gates(gates, m, None, None, ProductionRef("production v1", ref, items=other), records)
    assert next(o for o in fallback.outcomes if o.name == "production_ppl").ci_low == a.ci_low


def test_regression_stays_paired_when_the_base_items_are_there():
    bench = [{"id": i, "adapter_correct": i % 4 != 0, "base_correct": i % 4 != 0} for i in range(24)]
    records = {"benchmark": bench}
    m = suite_metrics(records)
    gates = GatesConfig.model_validate({k: {"enabled": k == "regression"} for k in GatesConfig.model_fields
                                        if k != "intervals"})
    reg = evaluate_gates(gates, m, None, 0.75, None, records).outcomes[0]
    unpaired = {"benchmark": [{k: v for k, v in r.items() if k != "base_correct"} for r in bench]}
    wilson = evaluate_gates(gates, m, None, 0.75, None, unpaired).outcomes[0]
    assert reg.method == "newcombe-paired" and wilson.method == "wilson"
    assert reg.ci_high - reg.ci_low < 0.7 * (wilson.ci_high - wilson.ci_low)
