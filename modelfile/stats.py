"""Exact binomial confidence intervals, without scipy: how sure a false-alarm rate is.

A threshold's expected anomaly rate is k of n held-out normal images above it; the
Clopper-Pearson interval bounds the true rate. Its ends are quantiles of Beta distributions,
found here by bisection on the binomial tail, which equals the Beta CDF for whole counts.
"""

from __future__ import annotations

import math

from modelfile.metadata import CONFIDENCE


def _binomial_at_least(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p), summed in log space to stay finite for large n."""
    if k <= 0:
        return 1.0
    if p <= 0.0:
        return 0.0
    if p >= 1.0:
        return 1.0
    log_p, log_q = math.log(p), math.log1p(-p)
    terms = [
        math.lgamma(n + 1)
        - math.lgamma(i + 1)
        - math.lgamma(n - i + 1)
        + i * log_p
        + (n - i) * log_q
        for i in range(k, n + 1)
    ]
    top = max(terms)
    return min(1.0, math.exp(top) * sum(math.exp(t - top) for t in terms))


def _solve(target: float, k: int, n: int) -> float:
    """The p in [0, 1] where P(X >= k) reaches `target` (it grows with p)."""
    lo, hi = 0.0, 1.0
    for _ in range(60):  # 2^-60: far below any rate a threshold is judged by
        mid = (lo + hi) / 2
        if _binomial_at_least(k, n, mid) < target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def clopper_pearson(k: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The two-sided Clopper-Pearson interval for a rate of `k` successes in `n` trials."""
    if n < 1 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n and n >= 1, got k={k}, n={n}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence {confidence} must lie strictly between 0 and 1")
    alpha = 1.0 - confidence
    # Lower end: P(X >= k | p) = alpha / 2. Upper end: P(X <= k | p) = alpha / 2,
    # i.e. P(X >= k + 1 | p) = 1 - alpha / 2.
    low = 0.0 if k == 0 else _solve(alpha / 2, k, n)
    high = 1.0 if k == n else _solve(1.0 - alpha / 2, k + 1, n)
    return low, high
