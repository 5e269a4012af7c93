"""Serving a local corpus over HTTP in the format the web backend reads, so that local and web
mode are one code path (the agent's browser cannot tell a served corpus from the web).

    GET /search?q=<query>&format=json[&k=10]   SearxNG-style JSON; each result also has "offset"
                                               (where the hit is in the opened page) and "doc_id"
    GET /doc/<doc_id>                          the document as an HTML page
    GET <the path of the document's own url>   the same page (e.g. /3/library/os.html)
    GET /healthz                               {"status": "ok", "documents": N}

The server is the standard library's ThreadingHTTPServer: it needs nothing beyond Python, starts
and stops cleanly inside a test or a training process on a background thread, and the load (one
agent's clicks) is tiny. Every corpus string that goes into a page is escaped.

The corpus is duck-typed: `documents` (iterable of Document), `get(doc_id)`, `by_url(url)` and,
optionally, `passage(passage_id)`; the searcher is anything with `search(query, k)` returning hits
with `passage_id` and `doc_id` (env.search.base.Hit).
"""
from __future__ import annotations

import html
import json
import re
import sys
import threading
from collections import OrderedDict
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, unquote, urlsplit

from citeenv.backends import Page
from citeenv.documents import Document, Link, normalize_ws
from citeenv.safe_url import safe_http_url
from citeenv.web.html import render_html

_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n(?:[ \t]*\n)*")  # blank lines; the next line keeps its indent


@dataclass
class ServeConfig:
    default_k: int = 10
    max_k: int = 50
    snippet_chars: int = 300
    max_query_chars: int = 1000
    rendered_cache: int = 128  # rendered pages kept to place search hits in them
    log_requests: bool = False


class CorpusSite:
    """What the server answers, apart from HTTP: search results and document pages."""

    def __init__(self, corpus, searcher, base_url: str, config: ServeConfig | None = None):
        self.corpus = corpus
        self.searcher = searcher
        self.base_url = base_url.rstrip("/")
        self.config = config or ServeConfig()
        self._by_path: dict[str, str] = {}
        for doc in _documents(corpus):
            path = _own_path(doc.url)
            if path is not None:
                self._by_path.setdefault(path, doc.id)
        self._search_lock = threading.Lock()  # searchers are not promised to be thread-safe
        self._cache_lock = threading.Lock()
        self._rendered: OrderedDict[str, tuple[Page, str, list[int]]] = OrderedDict()

    # -- documents ----------------------------------------------------------------------------

    def document_for_path(self, path: str, query: str = "") -> Document | None:
        """The document a request names: /doc/<id>, or the path (and query) of the document's url."""
        if path.startswith("/doc/"):
            return _get(self.corpus, unquote(path[len("/doc/"):]))
        doc_id = self._by_path.get(f"{path}?{query}" if query else path) or self._by_path.get(path)
        return _get(self.corpus, doc_id) if doc_id is not None else None

    def local_url(self, doc: Document) -> str:
        path = _own_path(doc.url)
        if path is not None and self._by_path.get(path) == doc.id:
            return self.base_url + path
        return f"{self.base_url}/doc/{quote(doc.id, safe='')}"

    def page_html(self, doc: Document) -> str:
        """The document as HTML: the text in paragraphs (indented blocks in <pre>), its links as
        anchors over the same text. Links to documents of the corpus point at this server."""
        text = doc.text
        spans = _link_spans(doc.links, len(text))
        body: list[str] = []
        pos = 0
        for m in list(_PARAGRAPH_BREAK.finditer(text)) + [None]:
            end = m.start() if m else len(text)
            if text[pos:end].strip():
                body.append(self._paragraph_html(text, pos, end, spans))
            if m:
                pos = m.end()
        loose = [lk for lk in doc.links if lk.start < 0 and self._href(lk.url)]
        if loose:  # links without a place in the text still get a line each, so they stay clickable
            items = "".join(f'<li><a href="{_attr(self._href(lk.url))}">{_esc(lk.text or lk.url)}</a></li>' for lk in loose)
            body.append(f"<section><h2>Links</h2><ul>{items}</ul></section>")
        title = _esc(doc.title or doc.id)
        canonical = f'<link rel="canonical" href="{_attr(doc.url)}">' if _own_path(doc.url) is not None else ""
        return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
                f"<title>{title}</title><meta name=\"citeagent:doc-id\" content=\"{_attr(doc.id)}\">{canonical}"
                "</head>\n<body><main>\n" + "\n".join(body) + "\n</main></body></html>\n")

    def _paragraph_html(self, text: str, start: int, end: int, spans: list[tuple[int, int, Link]]) -> str:
        chunk = text[start:end]
        pre = any(line[:1] in (" ", "\t") for line in chunk.split("\n")) or "  " in chunk.strip()
        pieces: list[str] = []
        pos = start
        for s, e, link in spans:
            if s < start or e > end:
                continue
            href = self._href(link.url)
            if href is None:
                continue
            pieces.append(self._text_html(text[pos:s], pre))
            pieces.append(f'<a href="{_attr(href)}">{self._text_html(text[s:e], pre)}</a>')
            pos = e
        pieces.append(self._text_html(text[pos:end], pre))
        inner = "".join(pieces)
        return f"<pre>{inner}</pre>" if pre else f"<p>{inner}</p>"

    @staticmethod
    def _text_html(s: str, pre: bool) -> str:
        return _esc(s) if pre else _esc(s).replace("\n", "<br>\n")

    def _href(self, url: str) -> str | None:
        """Where a document's link points on this server: the local page of a corpus document,
        else the link's own http(s) url; None for anything else (javascript:, mailto:, ...)."""
        if not isinstance(url, str):
            return None
        base, _, fragment = url.partition("#")
        target = _by_url(self.corpus, url) or _by_url(self.corpus, base)
        if target is not None:
            return self.local_url(target) + (f"#{fragment}" if fragment else "")
        return safe_http_url(url)

    # -- search --------------------------------------------------------------------------------

    def search(self, query: str, k: int) -> dict:
        """The k best documents, each shown by its best passage (as env.local.LocalBackend does)."""
        results = []
        for hit, doc in self._best_documents(query, k):
            passage = _passage(self.corpus, getattr(hit, "passage_id", None))
            passage_text = passage.text if passage is not None and passage.doc_id == doc.id else ""
            snippet = normalize_ws(passage_text or doc.text[: self.config.snippet_chars * 2])
            if len(snippet) > self.config.snippet_chars:
                snippet = snippet[: self.config.snippet_chars - 3].rstrip() + "..."
            results.append({
                "title": doc.title or doc.id,
                "url": self.local_url(doc),
                "content": snippet,
                "offset": self._offset_in_page(doc, passage_text),
                "doc_id": doc.id,
                "score": float(getattr(hit, "score", 0.0)),
            })
        return {"query": query, "number_of_results": len(results), "results": results}

    def _best_documents(self, query: str, k: int) -> list[tuple[object, Document]]:
        total = len(getattr(self.corpus, "passages", ())) or 100 * k
        fetch = min(4 * k, total)  # several passages may come from one document
        while True:
            with self._search_lock:
                hits = list(self.searcher.search(query, fetch))
            best: list[tuple[object, Document]] = []
            seen: set[str] = set()
            for hit in hits:
                doc = _get(self.corpus, getattr(hit, "doc_id", None))
                if doc is None or doc.id in seen:
                    continue
                seen.add(doc.id)
                best.append((hit, doc))
                if len(best) == k:
                    return best
            if len(hits) < fetch or fetch >= total:
                return best  # the searcher has nothing more to give
            fetch = min(4 * fetch, total)

    def _offset_in_page(self, doc: Document, passage_text: str) -> int:
        """Where passage_text starts in the page the browser will get for doc (-1 if not found).
        The page is rendered by the same code the web backend uses, so the offset is exact."""
        if not passage_text.strip():
            return -1
        page, norm, offsets = self._render(doc)
        needle = normalize_ws(passage_text)[:200]
        at = norm.find(needle)
        return offsets[at] if at >= 0 else -1

    def _render(self, doc: Document) -> tuple[Page, str, list[int]]:
        with self._cache_lock:
            if doc.id in self._rendered:
                self._rendered.move_to_end(doc.id)
                return self._rendered[doc.id]
        page = render_html(self.page_html(doc), self.local_url(doc))
        entry = (page, *_normalized_with_offsets(page.text))
        with self._cache_lock:
            self._rendered[doc.id] = entry
            while len(self._rendered) > self.config.rendered_cache:
                self._rendered.popitem(last=False)
        return entry


class CorpusServer:
    """A running server on a background thread. `close()` stops it and frees the port."""

    def __init__(self, httpd: ThreadingHTTPServer, site: CorpusSite):
        self.httpd = httpd
        self.site = site
        self.base_url = site.base_url
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="citeagent-serve", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=10)

    def wait(self) -> None:
        """Block until the server stops (for the command line)."""
        self._thread.join()

    def __enter__(self) -> "CorpusServer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def serve_corpus(corpus, searcher, host: str = "127.0.0.1", port: int = 0,
                 config: ServeConfig | None = None) -> tuple[CorpusServer, str]:
    """Serve corpus on host:port (0 = any free port) from a background thread.
    Returns the server (close() it) and its base url, e.g. "http://127.0.0.1:8765"."""
    httpd = ThreadingHTTPServer((host, port), _Handler)
    httpd.daemon_threads = True  # a stuck client never blocks close()
    bound_host, bound_port = httpd.server_address[:2]
    shown = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(bound_host, bound_host)
    base_url = f"http://[{shown}]:{bound_port}" if ":" in shown else f"http://{shown}:{bound_port}"
    try:
        httpd.site = CorpusSite(corpus, searcher, base_url, config)  # type: ignore[attr-defined]
    except BaseException:
        httpd.server_close()
        raise
    return CorpusServer(httpd, httpd.site), base_url  # type: ignore[attr-defined]


class _Handler(BaseHTTPRequestHandler):
    server_version = "citeagent-serve"
    sys_version = ""
    # HTTP/1.0 (the default): one request per connection, so no idle keep-alive threads linger.

    def do_GET(self) -> None:
        self._answer(send_body=True)

    def do_HEAD(self) -> None:
        self._answer(send_body=False)

    def _answer(self, send_body: bool) -> None:
        site: CorpusSite = self.server.site  # type: ignore[attr-defined]
        parts = urlsplit(self.path)
        try:
            if parts.path == "/healthz":
                status, ctype, body = 200, "application/json", _json({"status": "ok", "documents": _count(site.corpus)})
            elif parts.path == "/search":
                status, ctype, body = self._search(site, parts.query)
            else:
                doc = site.document_for_path(parts.path, parts.query)
                if doc is None:
                    status, ctype, body = 404, "text/html", _error_page(404, "No document at this address.")
                else:
                    status, ctype, body = 200, "text/html", site.page_html(doc)
        except Exception as e:  # the agent sees a plain 500, the operator the reason on stderr
            print(f"citeagent serve: error answering {self.path[:200]!r}: {type(e).__name__}: {e}", file=sys.stderr)
            status, ctype, body = 500, "text/plain", "internal error\n"
        data = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", f"{ctype}; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Security-Policy", "default-src 'none'")  # for a person opening it
        self.end_headers()
        if send_body:
            self.wfile.write(data)

    def _search(self, site: CorpusSite, query_string: str) -> tuple[int, str, str]:
        params = parse_qs(query_string, keep_blank_values=True)
        q = normalize_ws(params.get("q", [""])[0])
        fmt = params.get("format", ["json"])[0]
        cfg = site.config
        if fmt != "json":
            return 400, "application/json", _json({"error": "only format=json is served"})
        if not q:
            return 400, "application/json", _json({"error": "the q parameter is missing or empty"})
        if len(q) > cfg.max_query_chars:
            return 400, "application/json", _json({"error": f"q is longer than {cfg.max_query_chars} characters"})
        try:
            k = int(params.get("k", [str(cfg.default_k)])[0])
        except ValueError:
            return 400, "application/json", _json({"error": "k must be an integer"})
        k = max(1, min(k, cfg.max_k))
        return 200, "application/json", _json(site.search(q, k))

    def log_message(self, format: str, *args) -> None:
        if getattr(self.server.site.config, "log_requests", False):  # type: ignore[attr-defined]
            super().log_message(format, *args)


# -- helpers --------------------------------------------------------------------------------

def _esc(s: str) -> str:
    return html.escape(s, quote=False)


def _attr(s: str) -> str:
    return html.escape(s, quote=True)


def _json(obj) -> str:
    return json.dumps(obj, ensure_ascii=False)


def _error_page(status: int, message: str) -> str:
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{status}</title></head>"
            f"<body><p>{_esc(message)}</p></body></html>\n")


def _own_path(url: str) -> str | None:
    """The path (and query) a document's own url is served under, or None if it cannot be."""
    try:
        parts = urlsplit(url or "")
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.path.startswith("/") or parts.path == "/":
        return None
    if parts.path in ("/search", "/healthz") or parts.path.startswith("/doc/"):
        return None
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _link_spans(links: list[Link], size: int) -> list[tuple[int, int, Link]]:
    """The links with a valid place in the text, in order, without overlaps."""
    spans = sorted((lk.start, lk.end, lk) for lk in links
                   if isinstance(lk.start, int) and isinstance(lk.end, int) and 0 <= lk.start < lk.end <= size)
    out: list[tuple[int, int, Link]] = []
    for s, e, lk in spans:
        if not out or s >= out[-1][1]:
            out.append((s, e, lk))
    return out


def _normalized_with_offsets(text: str) -> tuple[str, list[int]]:
    """text with whitespace runs collapsed to one space, and the original index of each char."""
    chars: list[str] = []
    offsets: list[int] = []
    for m in re.finditer(r"\S+", text):
        if chars:
            chars.append(" ")
            offsets.append(m.start() - 1)
        chars.append(m.group())
        offsets.extend(range(m.start(), m.end()))
    return "".join(chars), offsets


def _documents(corpus):
    docs = getattr(corpus, "documents", corpus)
    return docs.values() if isinstance(docs, dict) else docs


def _count(corpus) -> int:
    try:
        return len(corpus)
    except TypeError:
        return sum(1 for _ in _documents(corpus))


def _get(corpus, doc_id) -> Document | None:
    if not isinstance(doc_id, str):
        return None
    try:
        return corpus.get(doc_id)
    except (KeyError, LookupError):
        return None


def _by_url(corpus, url: str) -> Document | None:
    try:
        return corpus.by_url(url)
    except (KeyError, LookupError, AttributeError):
        return None


def _passage(corpus, passage_id):
    lookup = getattr(corpus, "passage", None)
    if lookup is None or not isinstance(passage_id, str):
        return None
    try:
        return lookup(passage_id)
    except (KeyError, LookupError):
        return None
