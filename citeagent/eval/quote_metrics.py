"""Are the quotes real? Each quote must be found verbatim (after whitespace normalisation, as
the browser quotes) in the document it cites, and every [n] marker must name a quote.

Quotes are located in their page by character span, which the HotpotQA supporting-fact metrics
reuse to map a quote onto the page's sentences.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

from citeagent.answer import Answer, Quote
from citeenv.documents import Document

_WS = re.compile(r"\s+")


def normalized_with_offsets(text: str) -> tuple[str, list[int]]:
    """`normalize_ws(text)` together with, for each character of it, its offset in `text`.

    A run of whitespace becomes one space mapped to the run's first character, so a match in the
    normalised text maps back to a span of the original."""
    out: list[str] = []
    offsets: list[int] = []
    i, n = 0, len(text)
    while i < n and text[i].isspace():
        i += 1
    while i < n:
        m = _WS.match(text, i)
        if m:
            if m.end() < n:  # trailing whitespace is dropped, as normalize_ws strips
                out.append(" ")
                offsets.append(i)
            i = m.end()
        else:
            out.append(text[i])
            offsets.append(i)
            i += 1
    return "".join(out), offsets


def locate(quote_text: str, page_text: str, hint: tuple[int, int] | None = None) -> tuple[int, int] | None:
    """Character span of `quote_text` in `page_text`, comparing whitespace-normalised forms.

    Returns None when the quote is not in the page. When the quote occurs more than once, the
    occurrence at the quote's own recorded offset wins, else the first."""
    needle = _WS.sub(" ", quote_text).strip()
    if not needle:
        return None
    hay, offsets = normalized_with_offsets(page_text)
    starts = []
    pos = hay.find(needle)
    while pos != -1:
        starts.append(pos)
        pos = hay.find(needle, pos + 1)
    if not starts:
        return None
    spans = [(offsets[s], offsets[s + len(needle) - 1] + 1) for s in starts]
    if hint is not None and hint[0] >= 0:
        for span in spans:
            if span[0] == hint[0]:
                return span
    return spans[0]


# A function from a quote to the document it cites (or None) and, if none, why not.
DocumentLookup = Callable[[Quote], tuple[Document | None, str]]


def corpus_lookup(corpus, fallback_open=None) -> DocumentLookup:
    """Find a quote's document in a corpus by doc_id, then url, then title.

    `fallback_open(url) -> Page` (a live backend's `open`) is tried for pages outside the
    corpus, so answers citing the live web can still be checked."""

    def lookup(q: Quote) -> tuple[Document | None, str]:
        doc = None
        if corpus is not None:
            if q.doc_id:
                doc = _try(lambda: corpus.get(q.doc_id))
            if doc is None and q.url:
                doc = _try(lambda: corpus.by_url(q.url))
            if doc is None and q.title:
                doc = _try(lambda: corpus.get(q.title))
        if doc is None and fallback_open is not None and q.url:
            page = _try(lambda: fallback_open(q.url))
            if page is not None:
                doc = Document(id=page.doc_id or page.url, title=page.title, url=page.url, text=page.text)
        if doc is not None:
            return doc, ""
        where = f"doc_id={q.doc_id!r} " if q.doc_id else ""
        return None, f"quote [{q.n}] cites a document not in the corpus ({where}url={q.url!r} title={q.title!r})"

    return lookup


def _try(fn):
    try:
        return fn()
    except Exception:  # a lookup miss may surface as KeyError, BrowserError, ...: all mean "not found"
        return None


@dataclass
class QuoteCheck:
    quote: Quote
    doc: Document | None
    span: tuple[int, int] | None  # where the quote sits in doc.text
    reason: str  # "" when verbatim

    @property
    def verbatim(self) -> bool:
        return self.span is not None


def check_quotes(answer: Answer, lookup: DocumentLookup) -> list[QuoteCheck]:
    checks = []
    for q in answer.quotes:
        doc, why = lookup(q)
        if doc is None:
            checks.append(QuoteCheck(q, None, None, why))
            continue
        span = locate(q.text, doc.text, (q.start, q.end))
        reason = "" if span else f"quote [{q.n}] is not verbatim in {doc.url or doc.id}"
        if not q.text.strip():
            reason = f"quote [{q.n}] is empty"
        checks.append(QuoteCheck(q, doc, span, reason))
    return checks


def quote_metrics(answer: Answer, checks: list[QuoteCheck]) -> tuple[dict, list[str]]:
    """Per-answer quote metrics and the reasons for each failure.

    - quote_verbatim_rate: fraction of the answer's quotes found verbatim (None: no quotes)
    - all_quotes_verbatim: 1 if every quote is verbatim (None: no quotes)
    - n_dangling_markers / has_dangling_markers: [n] markers naming no quote
    - cited_statement_rate: fraction of the answer's statements that cite something
    """
    reasons = [c.reason for c in checks if c.reason]
    n = len(checks)
    ok = sum(c.verbatim for c in checks)
    dangling = answer.dangling_markers()
    if dangling:
        reasons.append(f"markers {dangling} point at no quote")
    statements = [] if answer.declined else answer.statements()
    metrics = {
        "n_quotes": n,
        "quote_verbatim_rate": ok / n if n else None,
        "all_quotes_verbatim": float(ok == n) if n else None,
        "n_dangling_markers": len(dangling),
        "has_dangling_markers": float(bool(dangling)),
        "cited_statement_rate": (sum(bool(c) for _, c in statements) / len(statements)) if statements else None,
    }
    return metrics, reasons
