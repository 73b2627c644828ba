"""Interval statistics: Wilson by hand, Newcombe's paired interval by hand, the paired bootstrap vs scipy's, power."""

from __future__ import annotations

import math

import numpy as np
import pytest

from app.core.stats import (detectable_effect, item_sd, mean_difference_bootstrap, n_for_effect, paired_bootstrap,
                            paired_proportion_difference, wilson_interval, z_value)


def test_wilson_by_hand():
    # 3/10, z = 1.959964: centre = (0.3 + z^2/20) / (1 + z^2/10), half = z sqrt(0.021 + z^2/400) / (1 + z^2/10)
    z = 1.959963984540054
    denom = 1 + z * z / 10
    centre = (0.3 + z * z / 20) / denom
    half = z * math.sqrt(0.3 * 0.7 / 10 + z * z / 400) / denom
    w = wilson_interval(3, 10)
    assert w.estimate == 0.3 and w.low == pytest.approx(centre - half) and w.high == pytest.approx(centre + half)
    assert (round(w.low, 4), round(w.high, 4)) == (0.1078, 0.6032)  # published tables: 0.108 - 0.603
    zero = wilson_interval(0, 8)  # 0/8 is not "certainly 0": upper bound z^2 / (n + z^2) = 0.3244
    assert zero.low == 0.0 and zero.high == pytest.approx(z * z / (8 + z * z))
    assert wilson_interval(8, 8).low == pytest.approx(8 / (8 + z * z))
    with pytest.raises(ValueError):
        wilson_interval(3, 0)


def test_newcombe_paired_by_hand():
    # no discordant pairs, 0/8 vs 0/8: phi = 0 (empty margins), interval = -+ the Wilson upper bound of 0/8
    d = paired_proportion_difference([False] * 8, [False] * 8)
    assert d.estimate == 0.0 and d.low == pytest.approx(-0.32441, abs=1e-5) and d.high == pytest.approx(0.32441, abs=1e-5)
    # 2x2 table both=12, adapter only=9, base only=2, neither=21 (n=44): difference 7/44
    a = [True] * 21 + [False] * 23
    b = [True] * 12 + [False] * 9 + [True] * 2 + [False] * 21
    got = paired_proportion_difference(a, b)
    w1, w2 = wilson_interval(21, 44), wilson_interval(14, 44)
    phi = (12 * 21 - 9 * 2) / math.sqrt(21 * 23 * 14 * 30)
    p1, p2 = 21 / 44, 14 / 44
    low = (p1 - p2) - math.sqrt((p1 - w1.low) ** 2 - 2 * phi * (p1 - w1.low) * (w2.high - p2) + (w2.high - p2) ** 2)
    high = (p1 - p2) + math.sqrt((w1.high - p1) ** 2 - 2 * phi * (w1.high - p1) * (p2 - w2.low) + (p2 - w2.low) ** 2)
    assert got.estimate == pytest.approx(7 / 44) and got.low == pytest.approx(low) and got.high == pytest.approx(high)
    assert 0 < got.low < got.estimate < got.high  # 9 vs 2 discordant pairs: a real improvement
    # pairing matters: the same marginals with perfectly correlated items give a narrower interval than independent
    independent = paired_proportion_difference([True] * 21 + [False] * 23, [True] * 7 + [False] * 23 + [True] * 7 + [False] * 7)
    assert got.width < independent.width


def test_paired_bootstrap_agrees_with_scipy():
    scipy_stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(1)
    x, y = rng.normal(0.3, 1, 40), rng.normal(0, 1, 40)
    ours = mean_difference_bootstrap(x, y, n_resamples=20000, seed=0)
    ref = scipy_stats.bootstrap((x, y), lambda a, b, axis: np.mean(a - b, axis=axis), paired=True, method="percentile",
                                n_resamples=20000, random_state=0, vectorized=True).confidence_interval
    assert ours.estimate == pytest.approx(np.mean(x - y))
    assert ours.low == pytest.approx(ref.low, abs=0.03) and ours.high == pytest.approx(ref.high, abs=0.03)
    assert mean_difference_bootstrap(x, y, seed=5) == mean_difference_bootstrap(x, y, seed=5)  # seeded


def test_bootstrap_ratio_of_sums_is_perplexity():
    # perplexity = exp(sum NLL / sum tokens): one item with 10 tokens at 20 nats, one with 30 tokens at 30 nats
    cols = np.array([[20.0, 30.0], [10.0, 30.0]])
    iv = paired_bootstrap(cols, lambda s: np.exp(s[..., 0] / s[..., 1]), n_resamples=500, seed=0)
    assert iv.estimate == pytest.approx(math.exp(50 / 40))
    # resampling two items can only give item 1 twice (e^2), item 2 twice (e^1) or both (e^1.25)
    assert iv.low == pytest.approx(math.e) and iv.high == pytest.approx(math.exp(2.0))


def test_power_by_hand():
    # n = ((1.95996 + 0.84162) * sd / mde)^2: sd 1, effect 0.5 -> 31.4 -> 32 items
    assert n_for_effect(1.0, 0.5) == 32
    assert n_for_effect(0.5, 0.1) == math.ceil((2.80158 * 5) ** 2)
    assert detectable_effect(1.0, 32) == pytest.approx(2.80158 / math.sqrt(32), rel=1e-4)
    assert z_value(0.95) == pytest.approx(1.959964)
    # the per-item sd behind an interval: 0/8 vs 0/8 still implies spread (no false "0 items needed")
    d = paired_proportion_difference([False] * 8, [False] * 8)
    assert item_sd(d) == pytest.approx(0.32441 / 1.959964 * math.sqrt(8), rel=1e-4)
    assert n_for_effect(item_sd(d), 0.1) > 8


def test_interval_clipped_to_a_rate_range():
    from app.core.stats import Interval

    iv = Interval(0.0, -0.064, 0.050, 84, method="newcombe-paired").clipped(0.0, 1.0)
    assert (iv.estimate, iv.low, iv.high, iv.n, iv.method) == (0.0, 0.0, 0.050, 84, "newcombe-paired")
    assert Interval(0.98, 0.9, 1.04, 10).clipped(0.0, 1.0).high == 1.0
    inside = Interval(0.3, 0.2, 0.4, 10)
    assert inside.clipped(0.0, 1.0) == inside
