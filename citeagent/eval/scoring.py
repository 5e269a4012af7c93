"""Score one answer against one question: every metric this evaluation reports, with the reason
for each failure. Used alike for our policies' episodes and for answers made elsewhere.

Conventions (the summary depends on them):
- A metric is None when it does not apply (no gold evidence of that kind; judge metrics for a
  declined answer; quote metrics for an answer without quotes); None is left out of means.
- A declined answer scores 0 on answer correctness (it did not answer) and None on citation
  metrics; the decline curve and `answered` account for declining.
- An empty, malformed or otherwise broken answer is a failure (0) on every metric it fails.
"""
from __future__ import annotations

from dataclasses import dataclass

from citeagent.answer import Answer
from citeagent.eval import answer_metrics as am
from citeagent.eval.citation_metrics import alce_citation_metrics, gophercite_supported
from citeagent.eval.datasets import EvalExample
from citeagent.eval.evidence_metrics import joint_metrics, page_evidence_metrics, quoted_sentences, supporting_fact_metrics
from citeagent.eval.quote_metrics import DocumentLookup, check_quotes, quote_metrics


@dataclass
class ScoringConfig:
    max_citations: int = 3  # ALCE reads at most this many citations per statement


def score_answer(example: EvalExample, answer: Answer, lookup: DocumentLookup, judge=None, config: ScoringConfig | None = None) -> dict:
    """{"metrics": {...}, "reasons": [...], "statements": [...], "quoted_sentences": [...]}"""
    config = config or ScoringConfig()
    reasons: list[str] = []
    text = "" if answer.declined else answer.plain_text()
    answered = not answer.declined
    if answer.declined:
        reasons.append("declined to answer")
    elif not text:
        reasons.append("empty answer")

    m: dict = {"answered": float(answered)}
    # --- answer correctness ------------------------------------------------------------
    if example.answers:
        m["em"] = am.best_exact_match(text, example.answers)
        m["f1"] = am.best_token_f1(text, example.answers)
        m["correct"] = am.correct(text, example.answers)
    if example.answer_groups:
        m["str_em"] = am.asqa_str_em(text, example.answer_groups)
        m["str_hit"] = float(m["str_em"] == 1.0)

    # --- quotes ------------------------------------------------------------------------
    checks = check_quotes(answer, lookup)
    qm, qreasons = quote_metrics(answer, checks)
    m.update(qm)
    reasons.extend(qreasons)

    # --- gold evidence -----------------------------------------------------------------
    sentences = quoted_sentences(checks)
    if example.gold_sentences is not None:
        sp = supporting_fact_metrics(sentences, set(map(tuple, example.gold_sentences)))
        golds = example.answers or [""]
        # HotpotQA has one gold answer; with several, the best-F1 one stands for the joint metric.
        prfs = [am.hotpot_answer_prf(text, g) for g in golds]
        f1, p, r = max(prfs)
        m.update({"answer_precision": p, "answer_recall": r})
        m.update(sp)
        m.update(joint_metrics(m.get("em", 0.0), p, r, sp))
        # The gold judge RL is measured by (citeagent/reward/gold_judge.py): answer F1 and recall of
        # the gold supporting sentences, weighted as it weighs them.
        from citeagent.reward.gold_judge import ANSWER_WEIGHT

        m["gold_score"] = ANSWER_WEIGHT * f1 + (1 - ANSWER_WEIGHT) * sp["sp_recall"]
        if sp["sp_recall"] < 1:
            missing = sorted(set(map(tuple, example.gold_sentences)) - sentences)
            reasons.append(f"gold supporting sentences not quoted: {missing}")
    if example.gold_urls:
        m.update(page_evidence_metrics(checks, example.gold_urls))

    # --- judged support ----------------------------------------------------------------
    verdicts = []
    if judge is not None and answered:
        cm, verdicts, creasons = alce_citation_metrics(example.question, answer, judge, config.max_citations)
        m.update(cm)
        reasons.extend(creasons)
        supported, prob, why = gophercite_supported(example.question, answer, judge)
        m["supported"] = supported
        m["support_prob"] = prob
        if why:
            reasons.append(why)
        if "correct" in m:
            m["plausible"] = m["correct"]
            m["supported_and_plausible"] = supported * m["correct"]
    elif judge is not None:
        m.update({"citation_recall": None, "citation_precision": None, "supported": None, "supported_and_plausible": None})

    return {
        "metrics": m,
        "reasons": reasons,
        "statements": [
            {"statement": v.statement, "citations": v.citations, "supported": v.supported, "needed": v.needed, "reason": v.reason}
            for v in verdicts
        ],
        "quoted_sentences": sorted([list(s) for s in sentences]),
        "quote_checks": [{"n": c.quote.n, "verbatim": c.verbatim, "span": list(c.span) if c.span else None, "reason": c.reason} for c in checks],
    }
