"""The one document model every corpus source produces, and passage chunking.

Passages keep character offsets into their document so that a search hit can open the
document at the right place and a quote can be traced back to the exact span it came from.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class Link:
    """A hyperlink. `start`/`end` are offsets of the anchor text in the page text (-1 if unknown)."""

    text: str
    url: str
    start: int = -1
    end: int = -1


@dataclass
class Document:
    id: str
    title: str
    url: str
    text: str
    links: list[Link] = field(default_factory=list)
    meta: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Document":
        links = [Link(**lk) if isinstance(lk, dict) else Link(*lk) for lk in d.get("links") or []]
        return cls(
            id=str(d["id"]),
            title=str(d.get("title") or ""),
            url=str(d.get("url") or ""),
            text=str(d["text"]),
            links=links,
            meta=dict(d.get("meta") or {}),
        )


@dataclass(frozen=True)
class Passage:
    id: str  # f"{doc_id}::{n}", stable while the document text is unchanged
    doc_id: str
    start: int  # character offsets into Document.text
    end: int
    text: str
    title: str = ""


_BREAK = re.compile(r"\n\s*\n|(?<=[.!?])\s+")


def chunk_document(doc: Document, max_chars: int = 600) -> list[Passage]:
    """Split a document into passages of at most ~max_chars, cutting at paragraph then sentence
    boundaries (a single over-long sentence is cut hard). Offsets index into doc.text."""
    text = doc.text
    cuts = [m.end() for m in _BREAK.finditer(text)] + [len(text)]
    passages: list[Passage] = []
    start = 0
    prev = 0
    for cut in cuts:
        if cut - start > max_chars and prev > start:
            passages.extend(_emit(doc, start, prev, max_chars, len(passages)))
            start = prev
        prev = cut
    if prev > start:
        passages.extend(_emit(doc, start, prev, max_chars, len(passages)))
    return passages


def _emit(doc: Document, start: int, end: int, max_chars: int, n0: int) -> list[Passage]:
    out = []
    while start < end:
        stop = min(end, start + max_chars) if end - start > max_chars else end
        seg = doc.text[start:stop]
        lead = len(seg) - len(seg.lstrip())
        body = seg.strip()
        if body:
            s = start + lead
            out.append(Passage(f"{doc.id}::{n0 + len(out)}", doc.id, s, s + len(body), body, doc.title))
        start = stop
    return out


_WS = re.compile(r"\s+")


def normalize_ws(text: str) -> str:
    """Collapse every run of whitespace to one space; quotes are matched on this form."""
    return _WS.sub(" ", text).strip()
