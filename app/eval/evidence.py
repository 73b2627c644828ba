"""Per-item suite records -> 95% intervals for every gate metric (the rules live in app.core.gates / app.core.stats).

Every interval is on the adapter's scale (what the report plots), computed from the paired per-item data:
  ppl            paired bootstrap of exp(sum NLL_adapter - sum NLL_base) / sum tokens), times the base perplexity
  conditioning   paired bootstrap of margin_adapter - r x margin_base, shifted by r x margin_base (the bound)
  task, safety,  paired 0/1 items: Newcombe's hybrid score interval of adapter - base, shifted by the base rate
  regression     (vs a stored base score: the adapter's Wilson interval, the stored score a constant)
  production     paired with production's per-item records when it left them (bootstrap ppl ratio / Newcombe format
                 rate), else the adapter alone vs production's stored metrics as constants (bootstrap ppl / Wilson)
  judge          bootstrap over pairs of the per-pair win score (1 / 0.5 / 0)
  forgetting     like ppl, on the general-text suite
"""

from __future__ import annotations

import math

import numpy as np

from app.core.stats import Interval, paired_bootstrap, paired_proportion_difference, wilson_interval


def perplexity_ratio(rows: list[dict], resamples: int, seed: int) -> Interval:
    """adapter perplexity / base perplexity on the same tokens, bootstrapped over items."""
    cols = np.array([[r["adapter_nll"] for r in rows], [r["base_nll"] for r in rows], [r["tokens"] for r in rows]])
    return paired_bootstrap(cols, lambda s: np.exp((s[..., 0] - s[..., 1]) / s[..., 2]), resamples, seed)


def perplexity(rows: list[dict], variant: str, resamples: int, seed: int) -> Interval:
    cols = np.array([[r[f"{variant}_nll"] for r in rows], [r["tokens"] for r in rows]])
    return paired_bootstrap(cols, lambda s: np.exp(s[..., 0] / s[..., 1]), resamples, seed)


def margin_excess(rows: list[dict], min_ratio: float, resamples: int, seed: int) -> Interval:
    """margin_adapter - min_ratio x margin_base (nats/token), bootstrapped over the conditioning items."""
    cols = np.array([[r[k] for r in rows] for k in ("adapter_nll", "adapter_other_nll", "base_nll", "base_other_nll",
                                                    "tokens", "other_tokens")])

    def stat(s):
        margin_a = s[..., 1] / s[..., 5] - s[..., 0] / s[..., 4]
        margin_b = s[..., 3] / s[..., 5] - s[..., 2] / s[..., 4]
        return margin_a - min_ratio * margin_b
    return paired_bootstrap(cols, stat, resamples, seed)


def paired_rate(rows: list[dict], key: str) -> tuple[Interval, float]:
    """(adapter - base interval for the 0/1 field ``key``, base rate)."""
    a = [bool(r[f"adapter_{key}"]) for r in rows]
    b = [bool(r[f"base_{key}"]) for r in rows]
    return paired_proportion_difference(a, b), float(np.mean(b))


def paired_proportion(a: list[bool], b: list[bool]) -> Interval:
    """Interval of mean(a) - mean(b) over paired 0/1 items (Newcombe)."""
    return paired_proportion_difference([bool(x) for x in a], [bool(x) for x in b])


def rate(rows: list[dict], key: str) -> Interval:
    return wilson_interval(sum(bool(r[key]) for r in rows), len(rows))


def win_rate(scores: list[float], resamples: int, seed: int) -> Interval:
    cols = np.array([scores, [1.0] * len(scores)])
    return paired_bootstrap(cols, lambda s: s[..., 0] / s[..., 1], resamples, seed)


def interval_metrics(name: str, iv: Interval) -> dict[str, float]:
    """Flat metric entries for an interval (stored with the eval metrics in the registry / MLflow)."""
    out = {f"{name}_ci_low": iv.low, f"{name}_ci_high": iv.high}
    return {k: v for k, v in out.items() if not math.isnan(v)}
