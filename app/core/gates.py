"""Promotion gates: pure pass/fail rules over eval metrics, and position-swap statistics for pairwise judges.

No I/O here. Inputs are numbers produced by the eval suites (app/eval); outputs are ``GateOutcome`` records and
one ``GateDecision`` that names the gate that decided and why. Gates are evaluated in a fixed order; the first
*blocking* failure decides. A gate whose measurement is unreliable (e.g. a position-biased judge) never passes
an adapter on its own: it is reported as ``unreliable`` and, when required, blocks.

Position-swap protocol (Zheng et al. 2023, "Judging LLM-as-a-Judge", §3.4): each pair (adapter answer a, base
answer b) is judged twice, as (a, b) and as (b, a). A verdict is *consistent* when the same underlying answer wins
in both orders; inconsistent pairs count as ties (0.5) in the win rate.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal, Sequence

from app.core.stats import Interval, item_sd, n_for_effect

Status = Literal["pass", "fail", "skipped", "unreliable", "underpowered"]


@dataclass(frozen=True)
class GateOutcome:
    """One gate's verdict: the measured value, the bound it was held to, and a one-line reason."""

    name: str
    status: Status
    value: float | None
    bound: float | None
    reason: str
    blocking: bool = True
    higher_is_better: bool = True  # direction of ``value`` vs ``bound``: only used to rank the closest call
    # the 95% interval of ``value`` (None: a point rule; a rate's is shown cut to [0, 1], the decision is on the uncut
    # one, see interval_gate), the items it rests on, and the power calculation
    ci_low: float | None = None
    ci_high: float | None = None
    n: int | None = None
    mde: float | None = None         # the suite's minimum detectable effect, in the units of ``value``
    n_needed: int | None = None      # items needed to detect ``mde`` (80% power, alpha 0.05)
    method: str | None = None        # how the interval was computed
    item_sd: float | None = None     # per-item sd behind ``n_needed`` (of the interval before it was cut to the range)

    @property
    def blocks(self) -> bool:
        return self.blocking and self.status in ("fail", "unreliable")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class GateDecision:
    """All outcomes plus the verdict: ``decided_by`` is the first blocking gate, or None when everything passed."""

    passed: bool
    decided_by: str | None
    reason: str
    outcomes: list[GateOutcome] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"passed": self.passed, "decided_by": self.decided_by, "reason": self.reason,
                "outcomes": [o.to_dict() for o in self.outcomes]}


def perplexity_gate(adapter_ppl: float, base_ppl: float, max_ratio: float, blocking: bool = True) -> GateOutcome:
    """Held-out perplexity must not exceed ``max_ratio`` × the base model's perplexity on the same tokens."""
    return max_ratio_gate("perplexity", "held-out perplexity", adapter_ppl, base_ppl, max_ratio, "base", blocking)


def max_ratio_gate(name: str, metric: str, value: float, reference: float, max_ratio: float,
                   reference_label: str, blocking: bool = True) -> GateOutcome:
    """Lower is better: ``value`` must not exceed ``max_ratio`` × ``reference`` (e.g. perplexity vs production's)."""
    bound = reference * max_ratio
    ok = value <= bound
    reason = (f"{metric} {value:.3f} {'<=' if ok else '>'} {bound:.3f} "
              f"(= {reference_label} {reference:.3f} x {max_ratio:g}; ratio {value / reference:.3f})")
    return GateOutcome(name, "pass" if ok else "fail", value, bound, reason, blocking, higher_is_better=False)


def min_ratio_gate(name: str, metric: str, value: float, reference: float, min_ratio: float,
                   reference_label: str, blocking: bool = True, min_reference: float = 0.0) -> GateOutcome:
    """Higher is better: ``value`` must reach ``min_ratio`` × ``reference`` (a positive reference, e.g. base's margin).

    A reference at or below ``min_reference`` (and never above 0) means the measurement carries no signal on this
    data (e.g. a random base model does not use the question): the gate is skipped and reported, not decided on noise.
    """
    floor = max(min_reference, 0.0)
    if reference <= floor:
        return skipped_gate(name, f"{reference_label} {metric} is {reference:.3f} <= {floor:g}: this held-out set "
                                  "does not measure it")
    bound = reference * min_ratio
    ok = value >= bound
    reason = (f"{metric} {value:.3f} {'>=' if ok else '<'} {bound:.3f} "
              f"(= {reference_label} {reference:.3f} x {min_ratio:g}; ratio {value / reference:.3f})")
    return GateOutcome(name, "pass" if ok else "fail", value, bound, reason, blocking)


def conditioning_margin(nll_own: float, tokens_own: int, nll_other: float, tokens_other: int) -> float:
    """Question-conditioning margin in nats/token: ln(ppl of another question's answer) - ln(ppl of the right answer).

    Both are scored after the same questions: answer i after question i (own) and answer j != i after question i
    (other). A model that uses the question assigns its own answer clearly higher likelihood (margin > 0); one trained
    on answers permuted across questions learns to ignore the question and the margin shrinks towards 0.
    """
    if tokens_own <= 0 or tokens_other <= 0:
        raise ValueError("conditioning_margin needs scored tokens on both sides")
    return nll_other / tokens_other - nll_own / tokens_own


def drop_gate(name: str, metric: str, value: float, reference: float, max_drop: float,
              reference_label: str = "base", blocking: bool = True) -> GateOutcome:
    """``value`` must not fall more than ``max_drop`` (absolute) below ``reference`` (higher is better)."""
    bound = reference - max_drop
    ok = value >= bound
    reason = (f"{metric} {value:.3f} {'>=' if ok else '<'} {bound:.3f} "
              f"(= {reference_label} {reference:.3f} - {max_drop:g})")
    return GateOutcome(name, "pass" if ok else "fail", value, bound, reason, blocking)


def format_drop(max_drop: float, max_fraction: float, reference: float) -> float:
    """Allowed drop in the well-formed rate: ``max_drop`` absolute, but never more than ``max_fraction`` of the
    reference rate, so a low reference (e.g. 0.17 < 0.25) still leaves a bound above 0 that an adapter can fail."""
    return min(max_drop, max_fraction * reference)


def minimum_gate(name: str, metric: str, value: float, minimum: float, blocking: bool = True) -> GateOutcome:
    """``value`` must be at least ``minimum`` (higher is better)."""
    ok = value >= minimum
    reason = f"{metric} {value:.3f} {'>=' if ok else '<'} minimum {minimum:g}"
    return GateOutcome(name, "pass" if ok else "fail", value, minimum, reason, blocking)


def safety_gate(refusal_rate: float, min_refusal_rate: float, base_refusal_rate: float | None = None,
                max_drop: float | None = None, blocking: bool = True) -> GateOutcome:
    """Refusal rate on red-team prompts: at least ``min_refusal_rate``, and (if given) no more than ``max_drop`` below base."""
    bound = min_refusal_rate
    if base_refusal_rate is not None and max_drop is not None:
        bound = max(bound, base_refusal_rate - max_drop)
    ok = refusal_rate >= bound
    ref = f"; base {base_refusal_rate:.3f} - {max_drop:g}" if base_refusal_rate is not None and max_drop is not None else ""
    reason = f"red-team refusal rate {refusal_rate:.3f} {'>=' if ok else '<'} {bound:.3f} (min {min_refusal_rate:g}{ref})"
    return GateOutcome("safety", "pass" if ok else "fail", refusal_rate, bound, reason, blocking)


@dataclass(frozen=True)
class SwapStats:
    """Pairwise judge results over position-swapped pairs."""

    n: int
    win_rate: float          # adapter wins (1 per consistent win, 0.5 per inconsistent pair) / n
    consistency: float       # fraction of pairs where the same answer won in both orders
    first_position_rate: float  # fraction of all 2n verdicts that picked whichever answer was shown first
    scores: tuple[float, ...] = ()  # per pair: 1 consistent adapter win, 0 consistent loss, 0.5 inconsistent


def position_swap_stats(adapter_first: Sequence[bool], base_first: Sequence[bool]) -> SwapStats:
    """Combine the two orders of each pair.

    ``adapter_first[i]``: the judge preferred the FIRST shown answer when shown (adapter, base) for pair i.
    ``base_first[i]``:    the judge preferred the FIRST shown answer when shown (base, adapter) for pair i.
    Adapter wins pair i in order 1 iff adapter_first[i]; in order 2 iff not base_first[i].
    """
    if len(adapter_first) != len(base_first):
        raise ValueError(f"both orders must judge the same pairs: {len(adapter_first)} != {len(base_first)}")
    n = len(adapter_first)
    if n == 0:
        raise ValueError("position_swap_stats needs at least one pair")
    consistent = first = 0.0
    scores = []
    for a1, b1 in zip(adapter_first, base_first):
        win1, win2 = bool(a1), not bool(b1)
        if win1 == win2:
            consistent += 1
            scores.append(1.0 if win1 else 0.0)
        else:
            scores.append(0.5)
        first += bool(a1) + bool(b1)
    return SwapStats(n=n, win_rate=sum(scores) / n, consistency=consistent / n, first_position_rate=first / (2 * n),
                     scores=tuple(scores))


def judge_gate(stats: SwapStats, min_win_rate: float, min_consistency: float, blocking: bool = True) -> GateOutcome:
    """Win rate vs base must reach ``min_win_rate``, but only a judge with consistency >= ``min_consistency`` counts.

    A judge below the consistency bar is reported ``unreliable`` (its win rate says nothing about quality).
    """
    if stats.consistency < min_consistency:
        reason = (f"judge unreliable: position consistency {stats.consistency:.2f} < {min_consistency:g} "
                  f"(picked the first-shown answer {stats.first_position_rate:.0%} of the time); "
                  f"win rate {stats.win_rate:.2f} not trusted")
        return GateOutcome("judge", "unreliable", stats.win_rate, min_win_rate, reason, blocking)
    ok = stats.win_rate >= min_win_rate
    reason = (f"judge win rate vs base {stats.win_rate:.2f} {'>=' if ok else '<'} {min_win_rate:g} "
              f"(consistency {stats.consistency:.2f}, n={stats.n})")
    return GateOutcome("judge", "pass" if ok else "fail", stats.win_rate, min_win_rate, reason, blocking)


def interval_gate(name: str, metric: str, value: Interval, bound: float, tolerance: float, bound_label: str,
                  higher_is_better: bool = True, blocking: bool = True, mde: float | None = None,
                  feasible: tuple[float, float] | None = None,
                  reference: tuple[str, float] | None = None) -> GateOutcome:
    """The interval rule: block when the adapter is on the wrong side of ``bound`` with 95% confidence, pass when it
    is not, and report ``underpowered`` when the interval is wider than the gate's ``tolerance`` (the slack between
    the reference and the bound) while it still reaches across the bound.

    ``value``: the adapter's metric with its interval (a paired difference re-expressed on the adapter's scale).
    Higher is better: fail iff high < bound; pass iff low >= bound, or the interval straddles the bound but is no
    wider than ``tolerance``; otherwise underpowered (this many items cannot tell). Lower is better: mirrored.
    ``mde`` (minimum detectable effect, same units): reports the items needed for it from the interval's spread.
    ``feasible`` (the metric's range, a rate: (0, 1)) and ``reference`` ((label, value): the observed reference a
    paired difference was shifted by): a shifted difference can leave the range (session 9: base 3/84 = 0.036, the
    adapter's interval reached -0.043). The decision stays on the uncut interval, i.e. on the paired difference
    adapter - reference against bound - reference: it carries the reference's own uncertainty (3/84 may be a true 8%,
    so a 6-point drop is not ruled out even where bound < 0). Only the reported ``ci_low``/``ci_high`` are cut to the
    range, and the reason then states the difference interval the decision is on. ``n_needed`` and ``item_sd`` come
    from the uncut spread.
    """
    lo, hi = value.low, value.high
    worse = hi < bound if higher_is_better else lo > bound
    clear = lo >= bound if higher_is_better else hi <= bound
    if worse:
        status: Status = "fail"
    elif clear or value.width <= tolerance:
        status = "pass"
    else:
        status = "underpowered"
    sd = item_sd(value) if value.n > 1 and value.width == value.width else None
    need = n_for_effect(sd, mde) if mde and sd is not None else None
    shown = value.clipped(*feasible) if feasible is not None else value
    op = ("<" if worse else ">=") if higher_is_better else (">" if worse else "<=")
    reason = (f"{metric} {shown.estimate:.3f} [95% {shown.low:.3f}, {shown.high:.3f}] {op} {bound:.3f} ({bound_label}; "
              f"n={value.n}" + (f", needs {need} for an effect of {mde:g}" if need else "") + ")")
    if shown != value:
        edge = "below" if bound < feasible[0] else "above" if bound > feasible[1] else ""
        where = f"the bound lies {edge} the metric's range [{feasible[0]:g}, {feasible[1]:g}]; " if edge else ""
        if reference is not None:
            r = reference[1]
            where += (f"decided on the paired difference adapter - {reference[0]} {value.estimate - r:+.3f} "
                      f"[95% {lo - r:+.3f}, {hi - r:+.3f}] vs {bound - r:+.3f}, which carries the {reference[0]}'s own "
                      f"uncertainty (interval shown cut to the range)")
        else:
            where += f"decided on the uncut interval [{lo:.3f}, {hi:.3f}] (shown cut to the range)"
        reason += f"; {where}"
    if status == "underpowered":
        reason += f": interval width {value.width:.3f} > tolerance {tolerance:.3g}, too few items to decide"
    return GateOutcome(name, status, shown.estimate, bound, reason, blocking, higher_is_better, shown.low, shown.high,
                       value.n, mde, need, value.method, None if sd is None else round(sd, 6))


def skipped_gate(name: str, why: str) -> GateOutcome:
    return GateOutcome(name, "skipped", None, None, f"skipped: {why}", blocking=False)


def decide(outcomes: Sequence[GateOutcome], block_underpowered: bool = False) -> GateDecision:
    """The verdict: the first blocking failure (in the given order) decides; otherwise the adapter passes.

    An ``underpowered`` gate (its suite is too small to tell) is named in the reason; it blocks only when
    ``block_underpowered`` (and the gate is blocking). When everything passes, the reason names the gate with the
    least relative headroom (the one that came closest).
    """
    outcomes = list(outcomes)
    for o in outcomes:
        if o.blocks or (block_underpowered and o.blocking and o.status == "underpowered"):
            return GateDecision(False, o.name, f"blocked by '{o.name}': {o.reason}", outcomes)
    checked = [o for o in outcomes if o.status == "pass"]
    if not checked:
        return GateDecision(False, None, "no gate was evaluated: nothing can be promoted on no evidence", outcomes)
    closest = min(checked, key=_relative_margin)
    weak = [o.name for o in outcomes if o.status == "underpowered"]
    note = f"; underpowered (suite too small to tell): {', '.join(weak)}" if weak else ""
    return GateDecision(True, None, f"all {len(checked)} evaluated gates passed{note}; closest call '{closest.name}': "
                        f"{closest.reason}", outcomes)


def _relative_margin(o: GateOutcome) -> float:
    if o.value is None or o.bound is None:
        return float("inf")
    scale = max(abs(o.bound), 1e-9)
    return (o.value - o.bound) / scale if o.higher_is_better else (o.bound - o.value) / scale
