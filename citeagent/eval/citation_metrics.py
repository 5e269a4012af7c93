"""Judge-based citation support: ALCE citation recall/precision (Gao et al. 2023) and
GopherCite's "supported" rate (Menick et al. 2022).

ALCE, per answer, statement by statement (a statement is a sentence with its [n] markers):
- citation recall: the share of statements whose cited quotes, concatenated, entail them.
  A statement citing nothing, or citing a quote that does not exist, is not supported.
- citation precision: the share of citations that are needed. A citation of a supported
  statement is needed if it entails the statement alone, or if the rest of the statement's
  citations no longer entail it without it; every citation of an unsupported statement is
  imprecise. ALCE looks at the first 3 citations of a statement (`max_citations`).
  One deliberate difference: ALCE skips the markers of a statement that cites a missing
  document; here they count as imprecise citations, so dangling markers cost precision too.

GopherCite: an answer is supported when its cited quotes (all its quotes when it has no
markers) entail the whole answer.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from citeagent.answer import Answer
from citeagent.eval.judge import SupportJudge, claim_text, evidence_text


@dataclass
class StatementVerdict:
    statement: str
    citations: list[int]
    supported: bool
    needed: list[bool] = field(default_factory=list)  # one per citation
    reason: str = ""


def alce_citation_metrics(question: str, answer: Answer, judge: SupportJudge, max_citations: int = 3) -> tuple[dict, list[StatementVerdict], list[str]]:
    statements = answer.statements()
    if not statements:
        return {"citation_recall": 0.0, "citation_precision": 0.0}, [], ["empty answer: no statement to check"]
    quotes = {q.n: q for q in answer.quotes}

    def premise(ns) -> str:
        return evidence_text([(quotes[n].title, quotes[n].text) for n in ns])

    verdicts: list[StatementVerdict] = []
    joint_pairs = {}
    for i, (sent, cites) in enumerate(statements):
        cites = list(dict.fromkeys(cites))[:max_citations]
        v = StatementVerdict(sent, cites, False, [False] * len(cites))
        if not cites:
            v.reason = "cites nothing"
        elif any(n not in quotes for n in cites):
            v.reason = f"cites missing quote(s) {[n for n in cites if n not in quotes]}"
        else:
            joint_pairs[i] = (premise(cites), claim_text(question, sent))
        verdicts.append(v)

    def judge_all(pairs: dict) -> dict:
        keys = list(pairs)
        probs = judge.support_probs([pairs[k] for k in keys])
        return {k: p >= judge.threshold for k, p in zip(keys, probs)}

    joint = judge_all(joint_pairs)
    alone_pairs, for_precision = {}, []
    for i, ok in joint.items():
        v = verdicts[i]
        v.supported = ok
        if not ok:
            v.reason = "cited quotes do not entail it"
        elif len(v.citations) == 1:
            v.needed = [True]
        else:
            for j, n in enumerate(v.citations):
                alone_pairs[(i, j)] = (premise([n]), claim_text(question, v.statement))
            for_precision.append(i)
    alone = judge_all(alone_pairs)
    rest_pairs = {}
    for (i, j), ok in alone.items():
        if ok:
            verdicts[i].needed[j] = True
        else:
            rest = [n for k, n in enumerate(verdicts[i].citations) if k != j]
            rest_pairs[(i, j)] = (premise(rest), claim_text(question, verdicts[i].statement))
    for (i, j), rest_ok in judge_all(rest_pairs).items():
        # Needed when the other citations cannot carry the statement without it.
        verdicts[i].needed[j] = not rest_ok

    n_cit = sum(len(v.citations) for v in verdicts)
    metrics = {
        "citation_recall": sum(v.supported for v in verdicts) / len(verdicts),
        "citation_precision": sum(sum(v.needed) for v in verdicts) / n_cit if n_cit else 0.0,
    }
    reasons = [f"statement {k + 1} ({v.statement[:60]!r}): {v.reason}" for k, v in enumerate(verdicts) if v.reason]
    if not n_cit:
        reasons.append("no citations: citation precision is 0")
    return metrics, verdicts, reasons


def gophercite_supported(question: str, answer: Answer, judge: SupportJudge) -> tuple[float, float, str]:
    """(supported 0/1, support probability, reason) for the answer as a whole."""
    if not answer.plain_text():
        return 0.0, 0.0, "empty answer"
    cited = [answer.quote(n) for n in dict.fromkeys(answer.markers())]
    cited = [q for q in cited if q is not None]
    if not answer.markers():
        cited = list(answer.quotes)
    if not cited:
        return 0.0, 0.0, "no evidence: the answer cites no existing quote"
    p = judge.support_probs([(evidence_text([(q.title, q.text) for q in cited]), claim_text(question, answer.plain_text()))])[0]
    ok = p >= judge.threshold
    return float(ok), p, "" if ok else f"judge: evidence does not support the answer (p={p:.2f})"
