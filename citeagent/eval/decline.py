"""GopherCite's decline-to-answer curve: answer only the questions whose answers score highest
(by the policy's own confidence or by a reward model), and watch quality among the answered as
coverage falls."""
from __future__ import annotations

CURVE_METRICS = ("correct", "f1", "supported", "supported_and_plausible")


def decline_curve(records: list[dict], score_key: str = "score", points: int = 20) -> list[dict] | None:
    """Points (coverage, n_answered, mean of each CURVE_METRICS among the answered).

    `coverage` is the fraction of all questions answered. Questions the policy declined itself
    are never answered; answered questions are dropped lowest `score_key` first (ties in input
    order). None when no answered question has a score."""
    n = len(records)
    answered = [r for r in records if r["metrics"].get("answered")]
    if not n or not answered or any(r.get(score_key) is None for r in answered):
        return None
    ranked = sorted(answered, key=lambda r: -r[score_key])  # stable: ties keep input order
    ks = sorted({round(len(ranked) * i / points) for i in range(points + 1)} - {0})
    curve = []
    for k in ks:
        kept = ranked[:k]
        pt = {"coverage": k / n, "n_answered": k, "min_score": kept[-1][score_key]}
        for name in CURVE_METRICS:
            vals = [r["metrics"].get(name) for r in kept]
            vals = [v for v in vals if v is not None]
            pt[name] = sum(vals) / len(vals) if vals else None
        curve.append(pt)
    return curve
