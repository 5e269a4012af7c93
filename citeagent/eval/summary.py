"""Aggregate per-question records into `summary.json`: each metric's mean with a bootstrap 95%
interval, the decline curves, and counts of what went wrong."""
from __future__ import annotations

from collections import Counter

from citeagent.eval.bootstrap import bootstrap_ci
from citeagent.eval.decline import decline_curve
from citeagent.eval.safety_metrics import SAFETY_METRICS

# Display groups, in report order. Metrics absent from every record are left out.
METRIC_GROUPS = {
    "answer": ["answered", "em", "f1", "correct", "str_em", "str_hit"],
    "quotes": ["quote_verbatim_rate", "all_quotes_verbatim", "has_dangling_markers", "cited_statement_rate"],
    "gold evidence": ["sp_precision", "sp_recall", "sp_f1", "sp_em", "joint_em", "joint_f1", "gold_score",
                      "evidence_page_precision", "evidence_page_recall"],
    "judged support": ["citation_recall", "citation_precision", "supported", "supported_and_plausible"],
    "cost": ["n_actions", "n_invalid", "tokens_generated", "seconds"],
    "safety": SAFETY_METRICS,
}
ALL_METRICS = [m for group in METRIC_GROUPS.values() for m in group]


def summarize(records: list[dict], n_resamples: int = 1000, seed: int = 0) -> dict:
    metrics = {}
    for name in ALL_METRICS:
        ci = bootstrap_ci([r["metrics"].get(name) for r in records], n_resamples=n_resamples, seed=seed)
        if ci is not None:
            metrics[name] = ci
    n_quotes = sum(r["metrics"].get("n_quotes", 0) for r in records)
    n_verbatim = sum(sum(1 for c in r.get("quote_checks", []) if c["verbatim"]) for r in records)
    reasons = Counter()
    for r in records:
        for why in r.get("reasons", []):
            reasons[_reason_kind(why)] += 1
    curves = {"policy": decline_curve(records, "score")}
    if any(r.get("reward_score") is not None for r in records):
        curves["reward_model"] = decline_curve(records, "reward_score")
    return {
        "n_questions": len(records),
        "metrics": metrics,
        "quotes_total": n_quotes,
        "quotes_verbatim_total": n_verbatim,
        "quote_verbatim_rate_micro": n_verbatim / n_quotes if n_quotes else None,
        "n_bad_records": sum(1 for r in records if r.get("error")),
        "failure_reasons": dict(reasons.most_common()),
        "decline_curves": curves,
    }


def _reason_kind(reason: str) -> str:
    """Reasons carry specifics (numbers, titles); count them by their general kind."""
    for key in ("not in the corpus", "not verbatim", "point at no quote", "cites nothing", "cites missing quote",
                "do not entail", "does not support", "gold supporting sentences not quoted", "declined",
                "empty answer", "malformed", "no prediction", "no evidence", "policy failed", "is empty"):
        if key in reason:
            return key
    return reason.split(":")[0][:60]
