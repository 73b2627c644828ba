"""Interval statistics for the eval gates: Wilson intervals, paired intervals for base-vs-adapter differences,
a vectorised paired bootstrap over items, and the power calculation that turns a minimum detectable effect into
the number of items a suite needs. Pure numpy + the normal quantile; no I/O.

References:
- Wilson (1927), "Probable inference, the law of succession, and statistical inference" (score interval).
- Newcombe (1998), "Improved confidence intervals for the difference between binomial proportions based on paired
  data", Stat. Med. 17: method 10 (hybrid score interval from the two marginal Wilson intervals and the phi
  correlation). Used for paired 0/1 items: a bootstrap of 0/8 vs 0/8 is the degenerate [0, 0]; this is [-0.32, 0.32].
- Efron & Tibshirani (1993), "An Introduction to the Bootstrap", percentile interval; items are resampled jointly
  (paired), so the base and adapter values of one item stay together.
- Power: n = ((z_{1-alpha/2} + z_{power}) * sd / mde)^2 for a paired mean difference (normal approximation).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Callable, Sequence

import numpy as np


@dataclass(frozen=True)
class Interval:
    """A point estimate with its two-sided confidence interval [low, high] over ``n`` items."""

    estimate: float
    low: float
    high: float
    n: int
    level: float = 0.95
    method: str = ""

    @property
    def width(self) -> float:
        return self.high - self.low

    def shifted(self, offset: float, method: str | None = None) -> "Interval":
        """The same interval moved by a constant (e.g. a difference interval re-expressed on the adapter's scale)."""
        return Interval(self.estimate + offset, self.low + offset, self.high + offset, self.n, self.level,
                        method or self.method)

    def clipped(self, low: float, high: float) -> "Interval":
        """The interval cut to a metric's feasible range [low, high] (a rate: [0, 1]). A difference interval shifted by
        an observed reference can reach past it (the base's 0.036 - 0.079); no value of the metric lies there."""
        return Interval(min(max(self.estimate, low), high), min(max(self.low, low), high),
                        min(max(self.high, low), high), self.n, self.level, self.method)

    def scaled(self, factor: float) -> "Interval":
        lo, hi = sorted((self.low * factor, self.high * factor))
        return Interval(self.estimate * factor, lo, hi, self.n, self.level, self.method)


def z_value(level: float) -> float:
    """Two-sided normal quantile: z_value(0.95) = 1.95996."""
    return NormalDist().inv_cdf(0.5 + level / 2)


def wilson_interval(successes: int, n: int, level: float = 0.95) -> Interval:
    """Wilson score interval for a proportion ``successes / n``; never leaves [0, 1], sane at 0/n and n/n."""
    if n <= 0:
        raise ValueError("wilson_interval needs n >= 1")
    if not 0 <= successes <= n:
        raise ValueError(f"successes must lie in [0, n]: {successes} of {n}")
    z = z_value(level)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return Interval(p, max(0.0, centre - half), min(1.0, centre + half), n, level, "wilson")


def paired_proportion_difference(adapter: Sequence[bool], base: Sequence[bool], level: float = 0.95) -> Interval:
    """Interval for mean(adapter) - mean(base) over paired 0/1 items (Newcombe 1998, method 10)."""
    a_ = np.asarray(adapter, dtype=bool)
    b_ = np.asarray(base, dtype=bool)
    if a_.shape != b_.shape or a_.ndim != 1:
        raise ValueError(f"paired items must have the same length: {a_.shape} vs {b_.shape}")
    n = int(a_.size)
    if n == 0:
        raise ValueError("paired_proportion_difference needs at least one item")
    both, only_a = int(np.sum(a_ & b_)), int(np.sum(a_ & ~b_))
    only_b, neither = int(np.sum(~a_ & b_)), int(np.sum(~a_ & ~b_))
    p1, p2 = (both + only_a) / n, (both + only_b) / n
    w1, w2 = wilson_interval(both + only_a, n, level), wilson_interval(both + only_b, n, level)
    margins = (both + only_a) * (only_b + neither) * (both + only_b) * (only_a + neither)
    phi = (both * neither - only_a * only_b) / math.sqrt(margins) if margins else 0.0
    d1l, d1u, d2l, d2u = p1 - w1.low, w1.high - p1, p2 - w2.low, w2.high - p2
    low = (p1 - p2) - math.sqrt(max(0.0, d1l ** 2 - 2 * phi * d1l * d2u + d2u ** 2))
    high = (p1 - p2) + math.sqrt(max(0.0, d1u ** 2 - 2 * phi * d1u * d2l + d2l ** 2))
    return Interval(p1 - p2, max(-1.0, low), min(1.0, high), n, level, "newcombe-paired")


def paired_bootstrap(columns: np.ndarray, statistic: Callable[[np.ndarray], np.ndarray], n_resamples: int = 2000,
                     seed: int = 0, level: float = 0.95) -> Interval:
    """Percentile bootstrap over items of a statistic of column sums.

    ``columns``: [k, n] per-item values (e.g. adapter NLL, base NLL, token count of item i in column i), resampled
    jointly so each item's values stay paired. ``statistic``: maps sums of shape [..., k] to values of shape [...]
    (vectorised: called once on the [n_resamples, k] resampled sums and once on the full-sample sums [k]).
    Ratios of sums (perplexity = exp(sum NLL / sum tokens)) are expressed directly, no per-item ratio needed.
    """
    cols = np.asarray(columns, dtype=np.float64)
    if cols.ndim != 2 or cols.shape[1] == 0:
        raise ValueError(f"columns must be [k, n] with n >= 1, got shape {cols.shape}")
    n = cols.shape[1]
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n, np.full(n, 1.0 / n), size=n_resamples)  # [B, n]: how often each item is drawn
    sums = counts @ cols.T  # [B, k]
    values = np.asarray(statistic(sums), dtype=np.float64)
    estimate = float(statistic(cols.sum(axis=1)))
    alpha = 1 - level
    low, high = np.quantile(values[np.isfinite(values)], [alpha / 2, 1 - alpha / 2]) if np.isfinite(values).any() \
        else (float("nan"), float("nan"))
    return Interval(estimate, float(low), float(high), n, level, f"paired-bootstrap-{n_resamples}")


def mean_difference_bootstrap(adapter: Sequence[float], base: Sequence[float], n_resamples: int = 2000,
                              seed: int = 0, level: float = 0.95) -> Interval:
    """Paired bootstrap interval for mean(adapter) - mean(base)."""
    a_, b_ = np.asarray(adapter, dtype=np.float64), np.asarray(base, dtype=np.float64)
    if a_.shape != b_.shape:
        raise ValueError(f"paired items must have the same length: {a_.shape} vs {b_.shape}")
    return paired_bootstrap(np.stack([a_ - b_, np.ones_like(a_)]), lambda s: s[..., 0] / s[..., 1],
                            n_resamples, seed, level)


def n_for_effect(sd: float, mde: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """Items needed to detect a paired mean difference of ``mde`` (per-item sd ``sd``), two-sided ``alpha``."""
    if mde <= 0:
        raise ValueError("the minimum detectable effect must be > 0")
    z = z_value(1 - alpha) + NormalDist().inv_cdf(power)
    return max(2, math.ceil((z * sd / mde) ** 2))


def detectable_effect(sd: float, n: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """The smallest paired mean difference ``n`` items detect with the given power (inverse of ``n_for_effect``)."""
    return (z_value(1 - alpha) + NormalDist().inv_cdf(power)) * sd / math.sqrt(max(n, 1))


def item_sd(interval: Interval) -> float:
    """Per-item standard deviation implied by an interval: half-width / z * sqrt(n) (standard error x sqrt(n)).

    Works for every interval above (bootstrap, Wilson, Newcombe), so the power calculation uses the same
    uncertainty the gate decided on; for a degenerate 0/n vs 0/n it falls back on the Wilson width, not 0.
    """
    return interval.width / (2 * z_value(interval.level)) * math.sqrt(interval.n)
