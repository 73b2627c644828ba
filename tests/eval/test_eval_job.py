"""End to end on real local Ray: suites as Ray Data jobs on the tiny model, gates decide, registry records, report.

A zero-init adapter (identical to base) passes; a noise adapter is blocked, and the report names the deciding gate.
The position-swap test runs a judge test double through the real Ray Data judge job.
"""

from __future__ import annotations

import pytest

from app.config.eval import EvalConfig
from app.registry import GateNotPassed, Registry

pytestmark = pytest.mark.ray


class FirstAnswerJudge:
    """Test double for a position-biased judge: always prefers whichever answer is shown first."""

    def first_preferred(self, prompts, firsts, seconds):
        return [True] * len(prompts)


def _cfg(tmp_path, adapter, data, url, name, judge="causal_lm") -> EvalConfig:
    return EvalConfig.model_validate({
        "model": {"source": "tiny:llama"}, "adapter": str(adapter),
        "data": {"heldout": str(data["qa"]), "perplexity_limit": 6, "task_limit": 4, "benchmark": str(data["hh"]),
                 "benchmark_offset": 0, "benchmark_limit": 6, "redteam": str(data["hh"]), "redteam_limit": 4,
                 "max_length": 96},
        "generation": {"task_max_new_tokens": 8, "safety_max_new_tokens": 8, "batch_size": 8},
        "judge": {"kind": judge, "limit": 4, "allow_base": True},  # the tiny base as judge: allowed explicitly
        "registry": {"url": url, "tenant": "acme", "name": name},
        "output_dir": str(tmp_path / name), "ray": {"num_cpus": 2}, "tracking": {"enabled": False},
    })


def test_gates_pass_identity_adapter_and_block_broken_one(ray_local, tiny_adapters, tiny_eval_data, tmp_path):
    from app.eval.runner import run_eval

    url = f"sqlite:///{tmp_path / 'reg.db'}"
    good = run_eval(_cfg(tmp_path, tiny_adapters["good"], tiny_eval_data, url, "good"))
    bad = run_eval(_cfg(tmp_path, tiny_adapters["broken"], tiny_eval_data, url, "broken", judge="none"))

    assert good.decision.passed, good.decision.reason
    assert good.metrics["ppl_adapter"] == pytest.approx(good.metrics["ppl_base"], rel=1e-4)
    assert not bad.decision.passed and bad.decision.decided_by == "perplexity"
    assert bad.metrics["ppl_adapter"] > 1.05 * bad.metrics["ppl_base"]
    text = bad.report_md.read_text()
    assert "BLOCKED" in text and "decided by gate **perplexity**" in text and "held-out perplexity" in text
    assert bad.report_png.stat().st_size > 10_000
    assert {"judge_consistency", "gsm8k_em_adapter", "refusal_rate_adapter", "bench_acc_adapter"} <= set(good.metrics)
    # the base was scored once (good's run) and its per-item results reused for broken's: the same base values,
    # and every gate still paired item by item (regression included)
    assert bad.metrics["base_cached"] == 1.0
    for key in ("ppl_base", "cond_margin_base", "general_ppl_base", "bench_acc_base", "gsm8k_em_base"):
        assert bad.metrics[key] == good.metrics[key], key
    assert next(o for o in bad.decision.outcomes if o.name == "regression").method == "newcombe-paired"

    reg = Registry(url)
    assert reg.base_score("acme", reg.show("acme", "good", 1).base_sha, "hh-pref-acc:hh.jsonl.gz:0:6:96") is not None
    assert reg.show("acme", "broken", 1).gate_report["decided_by"] == "perplexity"
    with pytest.raises(GateNotPassed, match="perplexity"):
        reg.promote("acme", "broken", 1, "staging")
    assert reg.promote("acme", "good", 1, "production").stage == "production"
    reg.close()
    skipped = next(o for o in good.decision.outcomes if o.name == "production")
    assert skipped.status == "skipped" and "no production version" in skipped.reason

    # the next candidate of the same name is also held to production's stored metrics on the same slice
    again = run_eval(_cfg(tmp_path, tiny_adapters["good"], tiny_eval_data, url, "good", judge="none"))
    by_name = {o.name: o for o in again.decision.outcomes}
    assert again.artifact_ref == "acme/good@v2" and again.decision.passed, again.decision.reason
    assert by_name["production_ppl"].status == "pass" and "production acme/good@v1" in by_name["production_ppl"].reason
    assert again.metrics["ppl_production"] == pytest.approx(good.metrics["ppl_adapter"])
    # paired with v1's per-item records: the same adapter on the same items, so the ratio interval is a point
    prod = by_name["production_ppl"]
    assert prod.method.startswith("paired-bootstrap") and prod.ci_high - prod.ci_low < 1e-3 * prod.value


def test_position_swap_first_answer_judge_is_unreliable(ray_local):
    """A judge that always prefers the first answer: consistency 0, reported unreliable (via the Ray Data job)."""
    from app.core.gates import decide, judge_gate, perplexity_gate
    from app.eval.report import write_report
    from app.eval.runner import run_judge

    pairs = [{"id": i, "question": f"q{i}", "adapter_answer": f"a{i}", "base_answer": f"b{i}"} for i in range(10)]
    stats = run_judge(pairs, FirstAnswerJudge, batch_size=4)
    assert stats.n == 10 and stats.consistency == 0.0 and stats.first_position_rate == 1.0
    assert stats.win_rate == pytest.approx(0.5)
    gate = judge_gate(stats, min_win_rate=0.45, min_consistency=0.6, blocking=True)
    assert gate.status == "unreliable"
    decision = decide([perplexity_gate(1.0, 1.0, 1.05), gate])
    assert not decision.passed and decision.decided_by == "judge"
    assert "judge unreliable: position consistency 0.00" in decision.reason


def test_reward_model_scores_safety_and_judges_both_orders(ray_local, tiny_model_dir, tiny_adapters, tiny_eval_data,
                                                           tmp_path):
    """A learned harmlessness scorer next to the phrase classifier, and a reward-model judge (not the candidate's
    base) in both orders: every gate carries its interval; the consistency is measured and reported."""
    from app.eval.runner import run_eval
    from tests.eval.conftest import make_tiny_reward_model

    rm = make_tiny_reward_model(tiny_model_dir, tmp_path / "rm")
    cfg = _cfg(tmp_path, tiny_adapters["broken"], tiny_eval_data, f"sqlite:///{tmp_path / 'reg.db'}", "rm",
               judge="reward_model")
    cfg = EvalConfig.model_validate({**cfg.model_dump(), "judge": {"kind": "reward_model", "source": str(rm), "limit": 4},
                                     "safety_scorer": {"source": str(rm)}})
    res = run_eval(cfg)
    by = {o.name: o for o in res.decision.outcomes}
    assert {"harmless_adapter", "harmless_base", "judge_consistency"} <= set(res.metrics)
    assert 0.0 < res.metrics["harmless_base"] < 1.0  # sigmoid(reward) of the base's red-team replies
    assert by["safety_scorer"].ci_low is not None and by["safety_scorer"].n == 4
    assert by["judge"].status in ("pass", "fail", "underpowered", "unreliable")
    # a reward model scores each answer on its own: only a tie (both orders pick the first) is inconsistent, so the
    # first-position rate is (n + ties) / 2n = 1 - consistency / 2
    assert res.metrics["judge_first_position_rate"] == pytest.approx(1 - res.metrics["judge_consistency"] / 2)
    assert all(o.ci_low is not None for o in res.decision.outcomes if o.status in ("pass", "fail", "underpowered"))
    assert "[95% " in res.report_md.read_text()
