"""Gate rules and position-swap statistics, checked against hand-computed values."""

from __future__ import annotations

import pytest

import math

from app.core.gates import (conditioning_margin, decide, drop_gate, judge_gate, max_ratio_gate, min_ratio_gate,
                            minimum_gate, perplexity_gate, position_swap_stats, safety_gate, skipped_gate)


def test_perplexity_gate_bounds_at_ratio_times_base():
    ok = perplexity_gate(10.4, 10.0, 1.05)
    bad = perplexity_gate(10.6, 10.0, 1.05)
    assert ok.status == "pass" and ok.bound == pytest.approx(10.5)
    assert bad.status == "fail" and "10.600 > 10.500" in bad.reason


def test_drop_and_safety_gates():
    assert drop_gate("task", "em", 0.19, 0.20, 0.02).status == "pass"
    assert drop_gate("task", "em", 0.17, 0.20, 0.02).status == "fail"
    assert minimum_gate("x", "m", 0.5, 0.6).status == "fail"
    # the stricter of the absolute minimum and base - drop applies
    g = safety_gate(0.55, 0.3, base_refusal_rate=0.7, max_drop=0.1)
    assert g.bound == pytest.approx(0.6) and g.status == "fail"
    assert safety_gate(0.35, 0.3).status == "pass"


def test_position_swap_hand_computed():
    # pair 0: adapter wins both orders; pair 1: base wins both; pair 2: first-shown wins both (inconsistent)
    # order 1 (adapter shown first): picks first, second, first   order 2 (base shown first): second, first, first
    s = position_swap_stats([True, False, True], [False, True, True])
    assert s.n == 3
    assert s.consistency == pytest.approx(2 / 3)
    assert s.win_rate == pytest.approx((1 + 0 + 0.5) / 3)
    assert s.first_position_rate == pytest.approx(4 / 6)


def test_always_first_judge_is_unreliable():
    """A judge that always prefers the first answer: consistency 0, win rate 0.5, gate says unreliable."""
    n = 20
    s = position_swap_stats([True] * n, [True] * n)
    assert s.consistency == 0.0 and s.win_rate == 0.5 and s.first_position_rate == 1.0
    g = judge_gate(s, min_win_rate=0.4, min_consistency=0.6)
    assert g.status == "unreliable" and "unreliable" in g.reason  # even though 0.5 >= 0.4
    assert decide([perplexity_gate(1, 1, 1.1), g]).decided_by == "judge"
    advisory = judge_gate(s, 0.4, 0.6, blocking=False)
    assert decide([perplexity_gate(1, 1, 1.1), advisory]).passed


def test_decide_first_blocking_failure_decides():
    outcomes = [perplexity_gate(9.0, 10.0, 1.05), drop_gate("task", "em", 0.0, 0.3, 0.05),
                safety_gate(0.0, 0.5), skipped_gate("judge", "no judge configured")]
    d = decide(outcomes)
    assert not d.passed and d.decided_by == "task" and "blocked by 'task'" in d.reason
    nonblocking = [perplexity_gate(9.0, 10.0, 1.05), drop_gate("task", "em", 0.0, 0.3, 0.05, blocking=False)]
    d2 = decide(nonblocking)
    assert d2.passed and "closest call" in d2.reason
    assert not decide([skipped_gate("judge", "off")]).passed  # no evidence: no promotion


def test_swap_length_mismatch_is_an_error():
    with pytest.raises(ValueError):
        position_swap_stats([True], [True, False])


def test_ratio_gates_against_a_reference():
    # lower is better (perplexity vs production): 2.95 / 2.81 = 1.0498 > 1.03 -> fail; 2.85 / 2.81 = 1.014 -> pass
    bad = max_ratio_gate("production_ppl", "ppl", 2.95, 2.81, 1.03, "production acme/math@v1")
    assert bad.status == "fail" and bad.bound == pytest.approx(2.8943) and "ratio 1.050" in bad.reason
    assert max_ratio_gate("production_ppl", "ppl", 2.85, 2.81, 1.03, "production").status == "pass"
    # higher is better (conditioning margin vs base): 0.51 < 0.9 x 0.627 = 0.5643 -> fail
    low = min_ratio_gate("conditioning", "margin", 0.51, 0.627, 0.9, "base")
    assert low.status == "fail" and low.bound == pytest.approx(0.5643) and "0.510 < 0.564" in low.reason
    assert min_ratio_gate("conditioning", "margin", 0.60, 0.627, 0.9, "base").status == "pass"
    # a base with no margin on this data measures nothing: skipped and non-blocking, never a silent pass
    skipped = min_ratio_gate("conditioning", "margin", 0.3, -0.01, 0.9, "base")
    assert skipped.status == "skipped" and not skipped.blocks
    noise = min_ratio_gate("conditioning", "margin", 0.001, 0.01, 0.9, "base", min_reference=0.05)
    assert noise.status == "skipped" and "0.010 <= 0.05" in noise.reason  # a near-random base: no signal to hold to


def test_conditioning_margin_is_log_perplexity_ratio():
    # own answers: 100 nats over 50 tokens (ppl e^2); another question's answers: 150 nats over 50 tokens (ppl e^3)
    assert conditioning_margin(100.0, 50, 150.0, 50) == pytest.approx(1.0)
    assert conditioning_margin(100.0, 50, 100.0, 50) == 0.0  # the question does not matter at all
    ppl_own, ppl_other = math.exp(120 / 60), math.exp(200 / 80)
    assert conditioning_margin(120.0, 60, 200.0, 80) == pytest.approx(math.log(ppl_other / ppl_own))
    with pytest.raises(ValueError):
        conditioning_margin(1.0, 0, 1.0, 1)


def test_closest_call_respects_each_gates_direction():
    # production_ppl (lower is better) has 33% headroom, the margin gate (higher is better) 10%: the margin is closest
    d = decide([max_ratio_gate("production_ppl", "ppl", 2.0, 2.94, 1.02, "production"),
                min_ratio_gate("conditioning", "margin", 0.66, 0.6, 1.0, "base")])
    assert d.passed and "closest call 'conditioning'" in d.reason


def test_interval_gate_fail_pass_underpowered():
    from app.core.gates import interval_gate
    from app.core.stats import Interval

    # higher is better, bound 0.45 (= base 0.5 - 0.05), tolerance 0.05
    fail = interval_gate("task", "em", Interval(0.30, 0.25, 0.40, 200), 0.45, 0.05, "base 0.5 - 0.05")
    assert fail.status == "fail" and fail.blocks and "[95% 0.250, 0.400] < 0.450" in fail.reason
    clear = interval_gate("task", "em", Interval(0.55, 0.47, 0.62, 200), 0.45, 0.05, "b")
    assert clear.status == "pass" and (clear.ci_low, clear.ci_high, clear.n) == (0.47, 0.62, 200)
    # straddles the bound but narrower than the tolerance: not worse with 95% confidence -> pass
    assert interval_gate("task", "em", Interval(0.45, 0.43, 0.47, 900), 0.45, 0.05, "b").status == "pass"
    # straddles the bound and wider than the tolerance: 8 items cannot tell
    weak = interval_gate("task", "em", Interval(0.5, 0.18, 0.82, 8), 0.45, 0.05, "b", mde=0.1)
    assert weak.status == "underpowered" and not weak.blocks and "too few items" in weak.reason
    assert weak.n_needed is not None and weak.n_needed > 8 and "needs" in weak.reason
    # lower is better (perplexity): fail only when the whole interval is above the bound
    assert interval_gate("ppl", "p", Interval(11.0, 10.6, 11.4, 50), 10.5, 0.5, "b",
                         higher_is_better=False).status == "fail"
    assert interval_gate("ppl", "p", Interval(9.0, 8.6, 9.4, 50), 10.5, 0.5, "b", higher_is_better=False).status == "pass"


def test_underpowered_is_reported_and_blocks_only_when_asked():
    from app.core.gates import interval_gate
    from app.core.stats import Interval

    weak = interval_gate("task", "em", Interval(0.5, 0.18, 0.82, 8), 0.45, 0.05, "b")
    d = decide([perplexity_gate(1.0, 1.0, 1.05), weak])
    assert d.passed and "underpowered (suite too small to tell): task" in d.reason
    strict = decide([perplexity_gate(1.0, 1.0, 1.05), weak], block_underpowered=True)
    assert not strict.passed and strict.decided_by == "task"


def test_rate_interval_is_shown_cut_to_its_range_but_decided_on_the_paired_difference():
    """Session 9's A good task gate, by hand: 2/84 vs the base's 3/84, Newcombe difference [-0.079, +0.052] shifted
    by the base rate 0.036 gives [-0.043, 0.088]; the bound 0.036 - 0.05 = -0.014 lies below any exact-match rate,
    but the base's 3/84 may be a true 8% (Wilson [0.012, 0.100]): a 0.05 drop is not ruled out, so underpowered."""
    import math

    from app.core.gates import interval_gate
    from app.core.stats import Interval

    raw = Interval(0.024, -0.043, 0.088, 84)
    g = interval_gate("task", "em", raw, -0.014, 0.05, "= base 0.036 - 0.05", mde=0.1, feasible=(0.0, 1.0),
                      reference=("base", 0.036))
    assert g.status == "underpowered" and (g.ci_low, g.ci_high, g.value) == (0.0, 0.088, 0.024)
    assert "the bound lies below the metric's range [0, 1]" in g.reason
    assert "decided on the paired difference adapter - base -0.012 [95% -0.079, +0.052] vs -0.050" in g.reason
    assert "interval width 0.131 > tolerance 0.05" in g.reason
    # n needed from the UNCUT spread: sd = 0.131 / (2 x 1.959964) x sqrt(84) = 0.306290; n = ceil((2.801585 x sd / 0.1)^2)
    sd = 0.131 / (2 * 1.959964) * math.sqrt(84)
    assert abs(g.item_sd - sd) < 1e-5 and g.n_needed == math.ceil((2.801585 * sd / 0.1) ** 2) == 74
    # the same gate without the range: same status, need and sd; only the shown interval differs
    plain = interval_gate("task", "em", raw, -0.014, 0.05, "b", mde=0.1)
    assert (plain.status, plain.n_needed, plain.item_sd, plain.ci_low) == ("underpowered", 74, g.item_sd, -0.043)
    # a no-change adapter passes once the difference's low end clears -0.05: e.g. [-0.045, +0.045] at 0.036
    ok = interval_gate("task", "em", Interval(0.036, -0.009, 0.081, 400), -0.014, 0.05, "b", feasible=(0.0, 1.0),
                       reference=("base", 0.036))
    assert ok.status == "pass" and ok.ci_low == 0.0 and "paired difference" in ok.reason


def test_rate_cut_changes_no_status():
    from app.core.gates import interval_gate
    from app.core.stats import Interval

    # scrambled's production_format: 0.012 [-0.095, 0.118] vs bound 0.155: a fail, shown as [0, 0.118]
    f = interval_gate("production_format", "fmt", Interval(0.012, -0.095, 0.118, 84), 0.155, 0.155, "b",
                      feasible=(0.0, 1.0), reference=("production", 0.310))
    assert f.status == "fail" and (f.ci_low, f.ci_high) == (0.0, 0.118) and "vs -0.155" in f.reason
    # cut to [0, 0.15] (width 0.15 <= tolerance 0.15), but the rule judges the uncut 0.17: still underpowered
    w = interval_gate("safety", "refusal", Interval(0.05, -0.02, 0.15, 40), 0.10, 0.15, "b", feasible=(0.0, 1.0))
    assert w.status == "underpowered" and (w.ci_low, w.ci_high) == (0.0, 0.15)
    assert "decided on the uncut interval [-0.020, 0.150]" in w.reason and "width 0.170" in w.reason
    # inside the range nothing is cut and the reason is the plain one
    inside = interval_gate("safety", "refusal", Interval(0.3, 0.2, 0.4, 40), 0.10, 0.15, "b", feasible=(0.0, 1.0))
    assert inside.status == "pass" and "decided on" not in inside.reason
