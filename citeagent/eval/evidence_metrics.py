"""Citation support against gold evidence, where a data set has it.

- Sentence level (HotpotQA `supporting_facts`, FEVER evidence): the sentences an answer quotes,
  as (title, sentence id), against the gold sentences, with HotpotQA's official supporting-fact
  EM / precision / recall / F1 and its joint answer+evidence metrics.
- Page level (the pydocs QA set, user JSONL with urls): the pages an answer quotes against the
  pages that support its gold answer.
"""
from __future__ import annotations

from urllib.parse import urldefrag

from citeagent.eval.quote_metrics import QuoteCheck


def quoted_sentences(checks: list[QuoteCheck]) -> set[tuple[str, int]]:
    """(title, sentence id) of every page sentence a verbatim quote overlaps.

    Sentence spans come from the document's `meta["sentences"]` ([start, end] offsets); a quote
    touching only a sentence's surrounding whitespace does not count as quoting it."""
    out: set[tuple[str, int]] = set()
    for c in checks:
        if c.span is None or c.doc is None:
            continue
        spans = c.doc.meta.get("sentences") if c.doc.meta else None
        if not spans:
            continue
        qs, qe = c.span
        text = c.doc.text
        for sid, (s, e) in enumerate(spans):
            core = text[s:e]
            s2 = s + (len(core) - len(core.lstrip()))
            e2 = e - (len(core) - len(core.rstrip()))
            if s2 < e2 and qs < e2 and s2 < qe:
                out.add((c.doc.title, sid))
    return out


def supporting_fact_metrics(predicted: set[tuple[str, int]], gold: set[tuple[str, int]]) -> dict:
    """HotpotQA's `update_sp`: precision, recall, F1 over (title, sent_id) pairs; EM when the sets
    are equal. Empty predictions score 0 precision (not undefined), as the official script."""
    tp = len(predicted & gold)
    fp = len(predicted - gold)
    fn = len(gold - predicted)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "sp_em": float(fp + fn == 0),
        "sp_precision": precision,
        "sp_recall": recall,
        "sp_f1": f1,
    }


def joint_metrics(answer_em: float, answer_precision: float, answer_recall: float, sp: dict) -> dict:
    """HotpotQA's joint metrics: precision and recall multiply across answer and evidence, the
    joint F1 is the F1 of those products, and joint EM needs both exact."""
    jp = answer_precision * sp["sp_precision"]
    jr = answer_recall * sp["sp_recall"]
    return {
        "joint_em": answer_em * sp["sp_em"],
        "joint_precision": jp,
        "joint_recall": jr,
        "joint_f1": 2 * jp * jr / (jp + jr) if jp + jr else 0.0,
    }


def normalize_url(url: str, keep_fragment: bool = True) -> str:
    """A url for comparison: https, no trailing slash, and the fragment only if asked for."""
    url = url.strip()
    base, frag = urldefrag(url)
    base = base.rstrip("/")
    if base.startswith("http://"):
        base = "https://" + base[len("http://"):]
    return f"{base}#{frag}" if keep_fragment and frag else base


def same_page(url: str, gold_url: str) -> bool:
    """Whether a quoted page is a gold page. Fragments count when both urls have one: the pydocs
    language-reference topics are distinct documents that differ only by fragment
    (topics.html#assert, topics.html#for); otherwise a section anchor on one side only is
    ignored."""
    a, b = normalize_url(url), normalize_url(gold_url)
    if a == b:
        return True
    if "#" in a and "#" in b:
        return False
    return normalize_url(url, False) == normalize_url(gold_url, False)


def page_evidence_metrics(checks: list[QuoteCheck], gold_urls: list[str]) -> dict:
    """Page-level citation precision (share of the answer's quotes that come from a supporting
    page) and recall (share of supporting pages quoted at least once). A quote from no known
    document counts as an unsupported quote."""
    if not checks:
        return {"evidence_page_precision": 0.0, "evidence_page_recall": 0.0}
    urls = [c.doc.url if c.doc is not None else c.quote.url for c in checks]
    good = [any(same_page(u, g) for g in gold_urls) for u in urls]
    found = [g for g in gold_urls if any(same_page(u, g) for u in urls)]
    return {
        "evidence_page_precision": sum(good) / len(good),
        "evidence_page_recall": len(found) / len(gold_urls) if gold_urls else 0.0,
    }
