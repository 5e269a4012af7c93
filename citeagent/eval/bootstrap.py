"""Percentile bootstrap intervals for a mean, and for a paired mean difference."""
from __future__ import annotations

import numpy as np


def _resampled_means(x: np.ndarray, n_resamples: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return x[rng.integers(0, x.size, size=(n_resamples, x.size))].mean(axis=1)


def bootstrap_ci(values, n_resamples: int = 1000, confidence: float = 0.95, seed: int = 0) -> dict | None:
    """Mean of `values` (None entries skipped) with a percentile-bootstrap interval; None when
    nothing is left. Questions are the resampling unit, so the interval says how much the mean
    depends on which questions happened to be asked."""
    x = np.asarray([v for v in values if v is not None], dtype=float)
    if x.size == 0:
        return None
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(_resampled_means(x, n_resamples, seed), [alpha, 1 - alpha])
    return {"mean": float(x.mean()), "ci_low": float(lo), "ci_high": float(hi), "n": int(x.size)}


def paired_bootstrap_ci(a, b, n_resamples: int = 1000, confidence: float = 0.95, seed: int = 0) -> dict | None:
    """Mean of b - a over the pairs where both are measured, with an interval from resampling
    pairs (the per-question effect cancels, so it is much tighter than two separate intervals)
    and a two-sided bootstrap p-value for "no difference"."""
    pairs = [(x, y) for x, y in zip(a, b) if x is not None and y is not None]
    if not pairs:
        return None
    d = np.asarray([y - x for x, y in pairs], dtype=float)
    means = _resampled_means(d, n_resamples, seed)
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(means, [alpha, 1 - alpha])
    mean = float(d.mean())
    if mean > 0:
        p = 2 * float(np.mean(means <= 0))
    elif mean < 0:
        p = 2 * float(np.mean(means >= 0))
    else:
        p = 1.0
    return {
        "mean": mean, "ci_low": float(lo), "ci_high": float(hi), "n": int(d.size),
        "mean_a": float(np.mean([x for x, _ in pairs])), "mean_b": float(np.mean([y for _, y in pairs])),
        "p_value": min(1.0, p), "sd": float(d.std(ddof=1)) if d.size > 1 else 0.0,
    }
