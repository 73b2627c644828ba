"""The gate report: ``gate_report.md`` (verdict, deciding gate and why, every gate, metrics) + ``gate_report.png``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from app.core.gates import GateDecision

_COLORS = {"pass": "#2e7d32", "fail": "#c62828", "unreliable": "#ef6c00", "skipped": "#9e9e9e",
           "underpowered": "#f9a825"}
# (panel title, metric prefix, gate that holds it to a bound, reference bars shown before the adapter's)
_PANELS = (("Perplexity vs base (lower is better)", "ppl", "perplexity", ("base",)),
           ("Question-conditioning margin\n(nats/token, vs base)", "cond_margin", "conditioning", ("base",)),
           ("General-text perplexity\n(forgetting, lower is better)", "general_ppl", "forgetting", ("base",)),
           ("Perplexity vs production", "ppl", "production_ppl", ("production",)),
           ("Well-formed answers ('#### n')", "answer_format", "production_format", ("base", "production")),
           ("GSM8K exact match", "gsm8k_em", "task", ("base",)),
           ("Benchmark: HH-RLHF pref. accuracy", "bench_acc", "regression", ("base",)),
           ("Red-team refusal rate", "refusal_rate", "safety", ("base",)),
           ("Learned harmlessness P(harmless)", "harmless", "safety_scorer", ("base",)),
           ("Judge win rate vs base", "judge_win_rate", "judge", ()))


def write_report(out_dir: str | Path, title: str, decision: GateDecision, metrics: dict[str, float],
                 examples: dict[str, Any] | None = None) -> tuple[Path, Path]:
    """Write the markdown + PNG report; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    png = _plot(out / "gate_report.png", title, decision, metrics)
    verdict = "PASSED" if decision.passed else "BLOCKED"
    lines = [f"# Gate report: {title}", "", f"**{verdict}**" + (f" — decided by gate **{decision.decided_by}**"
                                                                if decision.decided_by else ""), "",
             f"Why: {decision.reason}", "", "![gates](gate_report.png)", "",
             "Rule: a gate fails when the adapter is past its bound with 95% confidence, passes when it is not, and is "
             "*underpowered* when its 95% interval is wider than the gate's tolerance and still reaches across the "
             "bound (too few items to tell). *n needed*: items to detect the suite's minimum detectable effect "
             "(80% power, two-sided 0.05), from this run's per-item spread.", "",
             "| gate | status | blocking | value [95% interval] | bound | n used | n needed (effect) | reason |",
             "|---|---|---|---|---|---|---|---|"]
    for o in decision.outcomes:
        val = "" if o.value is None else f"{o.value:.4g}"
        if o.ci_low is not None:
            val += f" [{o.ci_low:.4g}, {o.ci_high:.4g}]"
        bound = "" if o.bound is None else f"{o.bound:.4g}"
        need = "" if o.n_needed is None else f"{o.n_needed} ({o.mde:.3g})"
        mark = " ⟵ decided" if o.name == decision.decided_by else ""
        lines.append(f"| {o.name}{mark} | {o.status} | {'yes' if o.blocking else 'no'} | {val} | {bound} | "
                     f"{'' if o.n is None else o.n} | {need} | {o.reason} |")
    lines += ["", "| metric | value |", "|---|---|"]
    lines += [f"| {k} | {v:.4g} |" for k, v in sorted(metrics.items())]
    for name, rows in (examples or {}).items():
        lines += ["", f"### {name} (first examples)", ""]
        for row in rows[:2]:
            lines += ["```", *(f"{k}: {str(v)[:300]}" for k, v in row.items()), "```"]
    md = out / "gate_report.md"
    md.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return md, png


def _plot(path: Path, title: str, decision: GateDecision, metrics: dict[str, float]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    status = {o.name: o for o in decision.outcomes}
    panels = [(t, k, g, refs) for t, k, g, refs in _PANELS
              if (f"{k}_adapter" in metrics or k in metrics) and not (refs == ("production",) and f"{k}_production" not in metrics)]
    cols = min(4, max(len(panels), 1))
    rows = -(-max(len(panels), 1) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.3 * cols, 3.4 * rows), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for ax, (label, key, gate_name, refs) in zip(axes.flat, panels):
        gate = status.get(gate_name)
        color = _COLORS[gate.status] if gate else "#9e9e9e"
        if key == "judge_win_rate":  # the bound applies to the win rate: it carries the gate's colour
            names, vals = ["win rate", "consistency"], [metrics[key], metrics.get("judge_consistency", 0.0)]
            colors = [color, "#90a4ae"]
        else:
            shown = [r for r in refs if f"{key}_{r}" in metrics]
            names = [*shown, "adapter"]
            vals = [*(metrics[f"{key}_{r}"] for r in shown), metrics[f"{key}_adapter"]]
            colors = [*(["#90a4ae"] * len(shown)), color]
        err = None
        if gate is not None and gate.ci_low is not None and key != "judge_win_rate":
            # the adapter bar carries the gate's 95% interval (asymmetric error bar)
            err = [[0.0] * (len(vals) - 1) + [max(vals[-1] - gate.ci_low, 0.0)],
                   [0.0] * (len(vals) - 1) + [max(gate.ci_high - vals[-1], 0.0)]]
        elif gate is not None and gate.ci_low is not None:
            err = [[max(vals[0] - gate.ci_low, 0.0), 0.0], [max(gate.ci_high - vals[0], 0.0), 0.0]]
        bars = ax.bar(names, vals, color=colors, yerr=err, capsize=4 if err else 0)
        # value labels: a zero bar (e.g. exact match 0 vs 0) is otherwise an empty panel
        ax.bar_label(bars, labels=[f"{v:.3g}" for v in vals], fontsize=8, padding=2)
        bound = gate.bound if gate and gate.bound is not None else None
        if bound is not None:
            ax.axhline(bound, color="black", linestyle="--", linewidth=1, label=f"bound {bound:.3g}")
            ax.legend(loc="lower right", fontsize=7)
        # y range: zero, every bar and the bound, with headroom for the labels (the bound can sit at the auto top edge)
        ci = (gate.ci_low, gate.ci_high) if gate is not None and gate.ci_low is not None else ()
        finite = [v for v in (*vals, bound, *ci) if v is not None and v == v]
        lo, hi = min([0.0, *finite]), max([0.0, *finite])
        span = (hi - lo) or 1.0
        ax.set_ylim(lo - 0.08 * span if lo < 0 else 0.0, hi + 0.2 * span if hi > 0 else 0.5 * span)
        if lo < 0:
            ax.axhline(0.0, color="#616161", linewidth=0.8)
        mark = " (decided)" if gate_name == decision.decided_by else ""
        ax.set_title(f"{label}\n[{gate_name}: {gate.status if gate else 'n/a'}{mark}]", fontsize=9, color=color)
        ax.tick_params(labelsize=8)
    verdict = "PASSED" if decision.passed else f"BLOCKED by {decision.decided_by}"
    fig.suptitle(f"{title}: {verdict}", fontsize=11, color="#2e7d32" if decision.passed else "#c62828")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
