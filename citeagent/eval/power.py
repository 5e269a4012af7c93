"""How large a paired test must be: the smallest difference a test of n questions detects, and the
questions a test needs to detect a given difference.

Normal approximation to the paired test of the mean per-question difference (the bootstrap p-value
`--compare` reports converges to it), two-sided at `alpha`. With the standard deviation `sd` of the
per-question differences, a true difference `delta` is found with probability `power` when
delta * sqrt(n) / sd >= z(1 - alpha/2) + z(power)."""
from __future__ import annotations

import math
from statistics import NormalDist

_Z = NormalDist()


def _check(alpha: float, power: float) -> None:
    if not 0 < alpha < 1:
        raise ValueError(f"alpha={alpha}: a significance level is between 0 and 1, e.g. 0.05.")
    if not 0 < power < 1:
        raise ValueError(f"power={power}: a power is between 0 and 1, e.g. 0.8.")


def _z_sum(alpha: float, power: float) -> float:
    _check(alpha, power)
    return _Z.inv_cdf(1 - alpha / 2) + _Z.inv_cdf(power)


def minimum_detectable_difference(sd: float, n: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """The smallest true mean difference a test of `n` paired questions finds with `power`."""
    if n < 2:
        raise ValueError(f"n={n}: a paired test needs at least 2 questions.")
    return _z_sum(alpha, power) * sd / math.sqrt(n)


def questions_needed(sd: float, delta: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """Paired questions a test needs to find a true mean difference `delta` with `power`."""
    if delta == 0:
        raise ValueError("delta=0: no test finds a zero difference; give the smallest difference that matters.")
    return max(2, math.ceil((_z_sum(alpha, power) * sd / abs(delta)) ** 2))


def power_at(sd: float, delta: float, n: int, alpha: float = 0.05) -> float:
    """Probability that a test of `n` paired questions finds a true mean difference `delta`
    (in its direction; the other tail's tiny share is left out)."""
    _check(alpha, 0.5)
    if sd == 0:
        return 1.0 if delta else 0.0
    return _Z.cdf(abs(delta) * math.sqrt(n) / sd - _Z.inv_cdf(1 - alpha / 2))
