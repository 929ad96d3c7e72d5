"""ragtune.significance against p-values known in closed form or enumerable by hand."""
import math
import time

import numpy as np
import pytest

from ragtune.significance import paired_ttest, randomization_test


def test_randomization_exact_small_cases():
    # d = [1, 2, 3], sum 6: of the 8 sign patterns only +++ and --- reach |sum| >= 6 -> p = 2/8.
    assert randomization_test([1, 2, 3], [0, 0, 0], seed=0) == 0.25
    # d = [1, -1, 2], sum 2: pattern sums are 2, 4, 0, 2, -2, 0, -4, -2 -> six of eight reach 2.
    assert randomization_test([1, 0, 2], [0, 1, 0], seed=0) == 0.75
    # Two-sided: swapping the systems changes nothing.
    assert randomization_test([0, 1, 0], [1, 0, 2], seed=0) == 0.75


def test_randomization_no_difference_is_one():
    assert randomization_test([0.3, 0.5, 0.1] * 10, [0.3, 0.5, 0.1] * 10, seed=0) == 1.0
    assert randomization_test([], [], seed=0) == 1.0


def test_randomization_sampled_agrees_with_exact():
    rng = np.random.default_rng(3)
    a, b = rng.random(12), rng.random(12)
    exact = randomization_test(a, b, trials=5000, seed=0)  # 2^12 = 4096 <= 5000: enumerated
    sampled = randomization_test(a, b, trials=3000, seed=0)  # 4096 > 3000: Monte Carlo
    assert exact != sampled
    assert sampled == pytest.approx(exact, abs=0.03)  # ~3 standard errors at 3000 trials


def test_randomization_seeded_and_never_zero():
    rng = np.random.default_rng(1)
    a = rng.random(200)
    b = a - 0.1  # every query better by 0.1: no random pattern reaches the observed sum
    assert randomization_test(a, b, trials=999, seed=5) == 1 / 1000
    a2, b2 = rng.random(100), rng.random(100)
    assert randomization_test(a2, b2, seed=7) == randomization_test(a2, b2, seed=7)
    assert randomization_test(a2, b2, seed=7) != randomization_test(a2, b2, seed=8)


def test_randomization_fast_on_10k_trials_1k_queries():
    rng = np.random.default_rng(0)
    a, b = rng.random(1000), rng.random(1000)
    start = time.perf_counter()
    p = randomization_test(a, b, trials=10000, seed=0)
    assert time.perf_counter() - start < 2.0  # ~0.07 s on one core; slack for a shared machine
    assert 0.0 < p <= 1.0


def test_ttest_closed_forms():
    # df = 1 (n = 2) is the Cauchy distribution: p = 1 - (2/pi) atan(|t|).
    # d = [1, 3]: mean 2, sd sqrt(2), se sqrt(2)/sqrt(2) = 1 -> t = 2 -> p = 0.295167
    assert paired_ttest([1, 3], [0, 0]) == pytest.approx(1 - 2 / math.pi * math.atan(2), rel=1e-9)
    # df = 2 (n = 3): p = 1 - |t| / sqrt(t^2 + 2).
    # d = [1, 2, 6]: mean 3, var (4 + 1 + 9)/2 = 7, t^2 = 9 / (7/3) = 27/7 -> p = 1 - sqrt(27/41) = 0.18850
    assert paired_ttest([1, 2, 6], [0, 0, 0]) == pytest.approx(1 - math.sqrt(27 / 41), rel=1e-9)
    # df = 4: the table's two-sided 5% critical value is t = 2.776445.
    # d = c + [-1, -1, 0, 1, 1]: sd 1, se 1/sqrt(5) -> t = c sqrt(5).
    c = 2.776445105 / math.sqrt(5)
    assert paired_ttest([c - 1, c - 1, c, c + 1, c + 1], [0] * 5) == pytest.approx(0.05, abs=1e-8)


def test_ttest_edges_and_symmetry():
    assert paired_ttest([1, 2, 3], [1, 2, 3]) == 1.0
    assert paired_ttest([2, 3, 4], [1, 2, 3]) == 0.0  # same gain on every query: no spread
    assert paired_ttest([1.0], [0.0]) == 1.0
    assert paired_ttest([0.2, 0.9, 0.4], [0.1, 0.3, 0.6]) == paired_ttest([0.1, 0.3, 0.6], [0.2, 0.9, 0.4])
    with pytest.raises(ValueError, match="equal lengths"):
        paired_ttest([1, 2], [1])
    with pytest.raises(ValueError, match="equal lengths"):
        randomization_test([1, 2], [1], seed=0)
