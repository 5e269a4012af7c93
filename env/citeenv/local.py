"""The browser backend for a local corpus: search returns one result per document, open
returns the document as a page."""
from __future__ import annotations

from citeenv.backends import BrowserError, Page, SearchResult
from citeenv.corpus import Corpus
from citeenv.documents import normalize_ws
from citeenv.search.base import Searcher


class LocalBackend:
    def __init__(self, corpus: Corpus, searcher: Searcher, snippet_chars: int = 300):
        self.corpus = corpus
        self.searcher = searcher
        self.snippet_chars = snippet_chars

    def search(self, query: str, k: int = 10) -> list[SearchResult]:
        """The k best documents, each shown by its best passage, in rank order. The result's
        offset is that passage's start, so clicking it opens the page at the hit."""
        if k <= 0 or not query.strip():
            return []
        total = len(self.corpus.passages)
        fetch = min(4 * k, total)  # several passages may come from one document
        while True:
            hits = self.searcher.search(query, fetch)
            results, seen = [], set()
            for hit in hits:
                if hit.doc_id in seen:
                    continue
                seen.add(hit.doc_id)
                doc = self.corpus.get(hit.doc_id)
                passage = self.corpus.passage(hit.passage_id)
                if doc is None or passage is None:
                    continue  # an index out of step with its corpus; open_index guards against this
                results.append(SearchResult(doc.title, doc.url, self.snippet(passage.text), passage.start))
                if len(results) == k:
                    return results
            if len(hits) < fetch or fetch >= total:
                return results  # the searcher has nothing more to give
            fetch = min(4 * fetch, total)

    def snippet(self, text: str) -> str:
        text = normalize_ws(text)
        if len(text) <= self.snippet_chars:
            return text
        cut = text[: self.snippet_chars].rsplit(" ", 1)[0] or text[: self.snippet_chars]
        return cut + " …"

    def open(self, url: str) -> Page:
        url = url.strip()
        # An anchor (json.html#json.dumps) names a place in a page: try the exact url first,
        # since some pages' urls carry one, then the page without it.
        doc = self.corpus.by_url(url) or self.corpus.by_url(url.split("#", 1)[0])
        if doc is None:
            raise BrowserError(f"no page at {url}")
        fragment = url.split("#", 1)[1] if "#" in url else ""
        return Page(title=doc.title, url=doc.url, text=doc.text, links=list(doc.links), doc_id=doc.id,
                    offset=_anchor_offset(doc, fragment), sentences=_sentence_spans(doc))


def _anchor_offset(doc, fragment: str) -> int:
    """Where the url's #fragment is in the page, from the document's "anchors" metadata; -1 (the
    top) when there is none. A corpus file is input like any other: a malformed entry is ignored."""
    anchors = doc.meta.get("anchors") if fragment and isinstance(doc.meta, dict) else None
    value = anchors.get(fragment) if isinstance(anchors, dict) else None
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= len(doc.text):
        return value
    return -1


def _sentence_spans(doc) -> list | None:
    """The document's sentence boundaries ("sentences" metadata: [[start, end], ...]), or None when
    it has none or they are malformed (they only guide which sentences are offered as quotes)."""
    spans = doc.meta.get("sentences") if isinstance(doc.meta, dict) else None
    if not isinstance(spans, list):
        return None
    n = len(doc.text)
    ok = all(isinstance(s, (list, tuple)) and len(s) == 2 and all(isinstance(x, int) and not isinstance(x, bool) for x in s)
             and 0 <= s[0] < s[1] <= n for s in spans)
    return [tuple(s) for s in spans] if ok else None
