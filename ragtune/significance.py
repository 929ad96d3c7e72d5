"""Paired significance tests over per-query scores of two systems on the same queries.

- `randomization_test`: two-sided paired randomization (sign-flip) test on the mean difference.
  Smucker, Allan & Carterette 2007, "A Comparison of Statistical Significance Tests for Information
  Retrieval Evaluation" (CIKM), recommend it for IR. Under the null hypothesis the two systems are
  exchangeable per query, so each per-query difference is equally likely to have either sign.
  When 2^n <= trials every sign pattern is enumerated (exact p); otherwise `trials` random patterns are
  drawn from `seed` and p = (hits + 1) / (trials + 1), which counts the observed pattern and so never
  reports p = 0 (Phipson & Smyth 2010, "Permutation P-values Should Never Be Zero").
- `paired_ttest`: two-sided paired Student t-test (Student 1908), t = mean(d) / (sd(d) / sqrt(n)) with
  n - 1 degrees of freedom; p from the Student-t CDF (scipy.special.stdtr; scipy is a dependency of
  pytrec-eval-terrier).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

_CHUNK = 1000  # sign patterns per matrix product: 1000 x n float64 keeps memory small for any n


def _differences(a: Sequence[float], b: Sequence[float]) -> np.ndarray:
    if len(a) != len(b):
        raise ValueError(f"paired test needs equal lengths, got {len(a)} and {len(b)}")
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    if not np.all(np.isfinite(d)):
        raise ValueError("paired test needs finite scores")
    return d


def randomization_test(a: Sequence[float], b: Sequence[float], *, trials: int = 10000, seed: int) -> float:
    """Two-sided p-value that `a` and `b` (scores of two systems on the same queries) differ in mean."""
    d = _differences(a, b)
    n = len(d)
    if n == 0 or not np.any(d):
        return 1.0
    observed = abs(d.sum())
    # Sums are compared with a tolerance: a sign pattern that reproduces the observed sum exactly can
    # differ in the last bits because the matrix product adds in another order.
    tol = 1e-9 * float(np.abs(d).sum())
    if n <= 30 and 2 ** n <= trials:
        patterns = (np.arange(2 ** n)[:, None] >> np.arange(n)) & 1  # every sign pattern, as bits
        sums = (1 - 2 * patterns).astype(np.float64) @ d
        return float(np.count_nonzero(np.abs(sums) >= observed - tol)) / 2 ** n
    rng = np.random.default_rng(seed)
    hits = 0
    for start in range(0, trials, _CHUNK):
        size = min(_CHUNK, trials - start)
        signs = 1.0 - 2.0 * rng.integers(0, 2, size=(size, n), dtype=np.int8)
        hits += int(np.count_nonzero(np.abs(signs @ d) >= observed - tol))
    return (hits + 1) / (trials + 1)


def paired_ttest(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided p-value of the paired t-test on a - b."""
    from scipy.special import stdtr

    d = _differences(a, b)
    n = len(d)
    if n < 2:
        return 1.0
    mean = float(d.mean())
    sd = float(d.std(ddof=1))
    if sd == 0.0:  # every query moved by the same amount: no spread to test against
        return 1.0 if mean == 0.0 else 0.0
    t = mean / (sd / math.sqrt(n))
    return float(2.0 * stdtr(n - 1, -abs(t)))
