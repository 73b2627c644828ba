"""Ordered gate outcomes with 95% intervals from the suites' per-item records (the interval rule of
``app.core.gates.interval_gate``: fail when the adapter is past the bound with 95% confidence, pass when it is not,
underpowered when the interval is wider than the gate's tolerance and still reaches across the bound). Rates (task,
regression, production_format, safety, safety_scorer, judge) are reported with their interval cut to [0, 1] (a paired
difference shifted by the observed reference can leave it); each is decided on the uncut paired difference, which
carries the reference's own uncertainty, and the reason says so when the cut changed what is shown.

The gate order is the same as the point rules' (runner.evaluate_gates): perplexity, conditioning, forgetting,
production, task, regression, safety (+ the learned harmlessness scorer), judge.
"""

from __future__ import annotations

from app.config.eval import GatesConfig
from app.core import gates as G
from app.eval import evidence as E

RATE = (0.0, 1.0)  # the range of a rate or a probability: reported intervals are cut to it (G.interval_gate)


def interval_outcomes(gates: GatesConfig, metrics: dict[str, float], swap: G.SwapStats | None,
                      stored_bench_base: float | None, production, records: dict[str, list[dict]]) -> list[G.GateOutcome]:
    k = dict(resamples=gates.intervals.bootstrap_resamples, seed=gates.intervals.seed)
    out: list[G.GateOutcome] = []
    ppl_rows = records.get("ppl") or []
    if gates.perplexity.enabled:
        spec, base = gates.perplexity, metrics["ppl_base"]
        ratio = E.perplexity_ratio(ppl_rows, **k)
        out.append(G.interval_gate("perplexity", "held-out perplexity", ratio.scaled(base), base * spec.max_ratio,
                                   base * (spec.max_ratio - 1), f"= base {base:.3f} x {spec.max_ratio:g}",
                                   higher_is_better=False, blocking=spec.blocking, mde=base * spec.mde))
    if gates.conditioning.enabled:
        spec = gates.conditioning
        base = metrics.get("cond_margin_base")
        if base is None:
            out.append(G.skipped_gate("conditioning", "needs at least 2 perplexity rows (data.perplexity_limit)"))
        elif base <= spec.min_base_margin:
            out.append(G.min_ratio_gate("conditioning", "question-conditioning margin (nats/token)",
                                        metrics["cond_margin_adapter"], base, spec.min_ratio, "base", spec.blocking,
                                        min_reference=spec.min_base_margin))
        else:
            bound = spec.min_ratio * base
            excess = E.margin_excess(ppl_rows, spec.min_ratio, **k)
            out.append(G.interval_gate("conditioning", "question-conditioning margin (nats/token)",
                                       excess.shifted(bound), bound, (1 - spec.min_ratio) * base,
                                       f"= base {base:.3f} x {spec.min_ratio:g}", blocking=spec.blocking,
                                       mde=spec.mde))
    if gates.forgetting.enabled:
        spec = gates.forgetting
        rows = records.get("general") or []
        if not rows:
            out.append(G.skipped_gate("forgetting", "no general-text rows were scored"))
        else:
            base = metrics["general_ppl_base"]
            ratio = E.perplexity_ratio(rows, **k)
            out.append(G.interval_gate("forgetting", "general-text perplexity", ratio.scaled(base),
                                       base * spec.max_ratio, base * (spec.max_ratio - 1),
                                       f"= base {base:.3f} x {spec.max_ratio:g}", higher_is_better=False,
                                       blocking=spec.blocking, mde=base * spec.mde))
    if gates.production.enabled:
        out.extend(_production(gates, production, records, k))
    if gates.task.enabled:
        diff, base = E.paired_rate(records["task"], "correct")
        out.append(G.interval_gate("task", "GSM8K exact match", diff.shifted(base), base - gates.task.max_drop,
                                   gates.task.max_drop, f"= base {base:.3f} - {gates.task.max_drop:g}",
                                   blocking=gates.task.blocking, mde=gates.task.mde, feasible=RATE,
                                   reference=("base", base)))
    if gates.regression.enabled:
        spec = gates.regression
        if stored_bench_base is not None and "base_correct" not in (records["benchmark"] or [{}])[0]:
            value, base, label = E.rate(records["benchmark"], "adapter_correct"), stored_bench_base, "stored base score"
        else:
            diff, base = E.paired_rate(records["benchmark"], "correct")
            value, label = diff.shifted(base), "base"
        out.append(G.interval_gate("regression", "benchmark preference accuracy", value, base - spec.max_drop,
                                   spec.max_drop, f"= {label} {base:.3f} - {spec.max_drop:g}",
                                   blocking=spec.blocking, mde=spec.mde, feasible=RATE, reference=(label, base)))
    if gates.safety.enabled:
        out.extend(_safety(gates, records["safety"], k))
    if gates.judge.enabled:
        out.append(_judge(gates, swap, k))
    return out


def _production(gates: GatesConfig, production, records, k) -> list[G.GateOutcome]:
    """No regression vs production. Paired item by item with production's own per-item records when it left them
    (``item_records.json``: same items, same tokens), else vs its stored metrics as constants (the adapter's
    interval alone: far wider, production's item-to-item spread is not cancelled)."""
    spec = gates.production
    ref = production.metrics if production is not None else None
    if ref is None:
        why = production.skip_reason if production is not None else "no registry name"
        return [G.skipped_gate("production", why or "no production reference")]
    prod = ref["ppl_adapter"]
    paired = _paired_with_production(records.get("ppl") or [], production.items, "ppl", ("adapter_nll", "tokens"))
    if paired is not None:
        rows = [{"adapter_nll": r["adapter_nll"], "base_nll": p["adapter_nll"], "tokens": r["tokens"]} for r, p in paired]
        value = E.perplexity_ratio(rows, **k).scaled(prod)
    else:
        value = E.perplexity(records["ppl"], "adapter", **k)
    out = [G.interval_gate("production_ppl", "held-out perplexity", value,
                           prod * spec.max_ppl_ratio, prod * (spec.max_ppl_ratio - 1),
                           f"= {production.label} {prod:.3f} x {spec.max_ppl_ratio:g}", higher_is_better=False,
                           blocking=spec.blocking, mde=prod * spec.mde)]
    if records.get("task") and "answer_format_adapter" in ref:
        fmt = ref["answer_format_adapter"]
        drop = G.format_drop(spec.max_format_drop, spec.max_format_drop_fraction, fmt)
        pairs = _paired_with_production(records["task"], production.items, "task", ("adapter_well_formed",))
        if pairs is not None:
            diff = E.paired_proportion([r["adapter_well_formed"] for r, _ in pairs],
                                       [p["adapter_well_formed"] for _, p in pairs])
            value = diff.shifted(fmt)
        else:
            value = E.rate(records["task"], "adapter_well_formed")
        out.append(G.interval_gate("production_format", "well-formed answer rate", value, fmt - drop, drop,
                                   f"= {production.label} {fmt:.3f} - {drop:.3g}", blocking=spec.blocking,
                                   mde=spec.max_format_drop, feasible=RATE, reference=(production.label, fmt)))
    return out


def _paired_with_production(rows: list[dict], items, suite: str, keys: tuple[str, ...]):
    """(candidate record, production record) per item when production's records cover exactly these items."""
    ref = {int(r["id"]): r for r in (items or {}).get(suite, [])}
    if not rows or any(int(r["id"]) not in ref or any(key not in ref[int(r["id"])] for key in keys) for r in rows):
        return None
    pairs = [(r, ref[int(r["id"])]) for r in rows]
    if "tokens" in keys and any(r["tokens"] != p["tokens"] for r, p in pairs):
        return None  # not the same answer tokens: not comparable item by item
    return pairs


def _safety(gates: GatesConfig, rows: list[dict], k) -> list[G.GateOutcome]:
    """Refusal rate (phrase classifier) and, when scored, the learned harmlessness score; both floored at the
    base model's measured value minus the allowed drop (never below the configured absolute minimum)."""
    spec = gates.safety
    diff, base = E.paired_rate(rows, "refused")
    bound = max(spec.min_refusal_rate, base - spec.max_drop)
    out = [G.interval_gate("safety", "red-team refusal rate (phrase classifier)", diff.shifted(base), bound,
                           spec.max_drop, f"= max(min {spec.min_refusal_rate:g}, base {base:.3f} - {spec.max_drop:g})",
                           blocking=spec.blocking, mde=spec.mde, feasible=RATE, reference=("base", base))]
    if rows and "adapter_harmless" in rows[0]:
        a = [r["adapter_harmless"] for r in rows]
        b = [r["base_harmless"] for r in rows]
        from app.core.stats import mean_difference_bootstrap

        d = mean_difference_bootstrap(a, b, k["resamples"], k["seed"])
        base_h = sum(b) / len(b)
        out.append(G.interval_gate("safety_scorer", "learned harmlessness P(harmless)", d.shifted(base_h),
                                   base_h - spec.max_scorer_drop, spec.max_scorer_drop,
                                   f"= base {base_h:.3f} - {spec.max_scorer_drop:g}",
                                   blocking=spec.blocking, mde=spec.mde, feasible=RATE, reference=("base", base_h)))
    return out


def _judge(gates: GatesConfig, swap: G.SwapStats | None, k) -> G.GateOutcome:
    spec = gates.judge
    if swap is None:
        return G.skipped_gate("judge", "no judge configured (eval.judge.kind = none)")
    if swap.consistency < spec.min_consistency or not swap.scores:
        return G.judge_gate(swap, spec.min_win_rate, spec.min_consistency, spec.blocking)
    wins = E.win_rate(list(swap.scores), **k)
    return G.interval_gate("judge", f"judge win rate vs base (consistency {swap.consistency:.2f})", wins,
                           spec.min_win_rate, max(0.5 - spec.min_win_rate, 1e-9), f"min {spec.min_win_rate:g}",
                           blocking=spec.blocking, mde=spec.mde, feasible=RATE)
