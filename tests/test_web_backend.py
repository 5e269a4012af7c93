"""WebBackend end to end: a SearxNG-format endpoint and the served corpus, all on 127.0.0.1."""
from __future__ import annotations

import argparse
import json
import re
from urllib.parse import parse_qs, urlsplit

import pytest

from citeenv.backends import BrowserError
from citeenv.corpus import Corpus
from citeenv.documents import Document, Link, normalize_ws
from citeenv.search.base import Hit
from citeenv.web.backend import WebBackend, make_web_backend
from citeenv.web.cli import add_serve_parser
from citeenv.web.fetch import Fetcher, FetchPolicy
from citeenv.web.html import render_html
from citeenv.web.searx import SearxClient, parse_results
from citeenv.web.serve import serve_corpus
from web_support import docs_server, network_guard, python_docs, raw_server, respond  # noqa: F401 (fixtures)

pytestmark = pytest.mark.usefixtures("network_guard")

DOCS_URL = "https://docs.python.org/3/"
PAGES = ["library/json.html", "library/marshal.html", "library/pickle.html", "library/csv.html",
         "library/glob.html", "library/fnmatch.html"]


# -- a SearxNG-format endpoint in front of the real docs -------------------------------------

def fake_searx(docs_server):
    """Answers /search like SearxNG, pointing at pages of the docs server, with some junk mixed in."""
    def handle(conn, method, path, server):
        parts = urlsplit(path)
        q = parse_qs(parts.query)
        if parts.path != "/search" or q.get("format") != ["json"]:
            respond(conn, 400, b"bad request", {"Content-Type": "text/plain"})
            return
        results = [
            {"title": "json \u2014 JSON encoder and decoder", "url": docs_server.url("/library/json.html"),
             "content": "JSON (JavaScript Object Notation), specified by RFC 7159", "engine": "x"},
            "not a result",
            {"title": "evil", "url": "javascript:alert(1)", "content": "x"},
            {"title": "no url"},
            {"title": "  csv   \u2014 CSV File\x1b Reading ", "url": docs_server.url("/library/csv.html"), "content": None},
            {"title": "relative", "url": "/library/glob.html", "content": "resolved against the endpoint"},
        ]
        body = json.dumps({"query": q["q"][0], "number_of_results": 3, "results": results}).encode()
        respond(conn, 200, body, {"Content-Type": "application/json"})
    return handle


def test_searx_search_then_open_then_click(docs_server, raw_server):
    searx = raw_server(fake_searx(docs_server))
    backend = make_web_backend(searx.url(), allow_hosts=(docs_server.host,))
    results = backend.search("json encoder", 5)
    assert [r.url for r in results] == [docs_server.url("/library/json.html"), docs_server.url("/library/csv.html"),
                                        searx.url("/library/glob.html")]
    assert results[0].title == "json \u2014 JSON encoder and decoder"
    assert results[0].snippet.startswith("JSON (JavaScript Object Notation)")
    assert results[1].title == "csv \u2014 CSV File Reading" and results[1].snippet == ""
    assert all(r.offset == -1 for r in results)
    assert searx.paths == ["/search?q=json+encoder&format=json&k=5"]

    page = backend.open(results[0].url)
    assert page.title.startswith("json \u2014 JSON encoder and decoder")
    assert "Be cautious when parsing JSON data from untrusted sources." in page.text
    marshal = next(lk for lk in page.links if lk.text == "marshal")
    assert marshal.url == docs_server.url("/library/marshal.html#module-marshal")
    assert page.text[marshal.start:marshal.end] == "marshal"
    clicked = backend.open(marshal.url)
    assert clicked.title.startswith("marshal \u2014 Internal Python object serialization")

    # The endpoint's origin is allow-listed; other loopback servers are not unless named.
    with pytest.raises(BrowserError, match="loopback"):
        make_web_backend(searx.url()).open(docs_server.url("/library/json.html"))


def test_pages_are_cached_per_backend(docs_server, raw_server):
    searx = raw_server(fake_searx(docs_server))
    pages = raw_server(lambda c, m, p, s: respond(c, 200, b"<title>c</title><p>cached</p>", {"Content-Type": "text/html"}))
    backend = make_web_backend(searx.url(), allow_hosts=(pages.host,))
    first, second = backend.open(pages.url("/p")), backend.open(pages.url("/p"))
    assert first is second and pages.connections == 1
    backend.clear_cache()
    backend.open(pages.url("/p"))
    assert pages.connections == 2


@pytest.mark.parametrize("body, ctype, message", [
    (b"<html>not json</html>", "application/json", "not valid JSON"),
    (b"[" * 100_000 + b"]" * 100_000, "application/json", "not valid JSON"),
    (b'{"query": "x"}', "application/json", 'no "results" list'),
    (b'{"results": {"a": 1}}', "application/json", 'no "results" list'),
    (b'[1, 2]', "application/json", 'no "results" list'),
    (b'{"results": []}', "text/html", "content type text/html"),
    (b"\xff\xfe\x00garbage", "application/json", "not valid JSON"),
])
def test_bad_search_answers_are_browser_errors(body, ctype, message, raw_server):
    searx = raw_server(lambda c, m, p, s: respond(c, 200, body, {"Content-Type": ctype}))
    with pytest.raises(BrowserError, match=message):
        make_web_backend(searx.url()).search("anything")


def test_search_endpoint_errors_and_empty_queries(raw_server):
    searx = raw_server(lambda c, m, p, s: respond(c, 503, b"busy", {"Content-Type": "text/plain"}, reason="Busy"))
    backend = make_web_backend(searx.url())
    with pytest.raises(BrowserError, match="HTTP 503"):
        backend.search("x")
    with pytest.raises(BrowserError, match="empty"):
        backend.search("   ")
    assert searx.connections == 1


def test_search_endpoint_on_a_private_address_needs_no_flag_but_others_do(network_guard):
    # The search url itself is allow-listed (the user named it); a private page is still refused.
    backend = make_web_backend("http://127.0.0.1:9/")
    with pytest.raises(BrowserError, match="private"):
        backend.open("http://192.168.0.1/")
    assert network_guard == []


def test_parse_results_bounds_and_cleans():
    data = {"results": [{"title": "t" * 1000, "url": "https://e.org/a", "content": "c\u202e" * 2000, "offset": 12},
                        {"title": "dup", "url": "https://e.org/a", "content": "again", "offset": 12},
                        {"title": "bool offset", "url": "https://e.org/b", "offset": True}]}
    results = parse_results(json.dumps(data), "http://127.0.0.1:1/search", 10)
    assert len(results) == 2
    assert len(results[0].title) <= 200 and len(results[0].snippet) <= 500 and "\u202e" not in results[0].snippet
    assert results[0].offset == 12 and results[1].offset == -1


def test_make_web_backend_rejects_a_bad_search_url():
    for bad in ("ftp://x/", "not a url", "http://"):
        with pytest.raises(ValueError, match="bad search url"):
            make_web_backend(bad)


# -- the served corpus ------------------------------------------------------------------------

class TermSearcher:
    """A small real searcher: passages ranked by how many query words they contain."""

    name = "terms"

    def __init__(self, corpus: Corpus):
        self.corpus = corpus
        self.words = [set(re.findall(r"\w+", p.text.lower())) for p in corpus.passages]

    def search(self, query: str, k: int = 10) -> list[Hit]:
        q = set(re.findall(r"\w+", query.lower()))
        ranked = sorted(((len(q & w), -i) for i, w in enumerate(self.words) if q & w), reverse=True)[:k]
        return [Hit(self.corpus.passages[-i].id, self.corpus.passages[-i].doc_id, float(score), rank)
                for rank, (score, i) in enumerate(ranked)]


@pytest.fixture(scope="module")
def docs_corpus() -> Corpus:
    """Documents made from real documentation pages, with their links, as a corpus source would."""
    docs = []
    for rel in PAGES:
        page = render_html((python_docs() / rel).read_text(encoding="utf-8"), DOCS_URL + rel)
        docs.append(Document(id=f"pydocs:{rel}", title=page.title, url=page.url, text=page.text, links=page.links))
    docs.append(Document(id="notes/odd id?#1", title="A note without a url", url="",
                         text="Plain note.\n\nIt links to json.", links=[Link("json", DOCS_URL + "library/json.html", 25, 29)]))
    return Corpus(docs, name="webtest")


@pytest.fixture
def served(docs_corpus):
    server, base_url = serve_corpus(docs_corpus, TermSearcher(docs_corpus))
    yield base_url
    server.close()


def test_served_corpus_search_and_open_end_to_end(served, docs_corpus, network_guard):
    backend = make_web_backend(served, only_search_host=True)
    results = backend.search("json encoder decoder JavaScript Object Notation", 3)
    assert results[0].url == served + "/3/library/json.html"
    assert results[0].title.startswith("json \u2014 JSON encoder and decoder")
    assert len({r.url for r in results}) == len(results)  # one result per document

    page = backend.open(results[0].url)
    doc = docs_corpus.get("pydocs:library/json.html")
    assert page.doc_id == doc.id
    assert page.title == doc.title
    assert normalize_ws(page.text) == normalize_ws(doc.text)
    assert [lk.text for lk in page.links] == [lk.text for lk in doc.links]
    for lk in page.links:
        assert page.text[lk.start:lk.end] == lk.text

    # The hit's offset is where its passage starts in the page the browser got.
    offset = results[0].offset
    assert offset >= 0
    assert normalize_ws(page.text[offset:offset + 400]).startswith(results[0].snippet[:60])
    assert {h for h, _ in network_guard} == {"127.0.0.1"}


def test_served_links_to_corpus_documents_stay_on_the_server(served, network_guard):
    backend = make_web_backend(served, only_search_host=True)
    page = backend.open(served + "/3/library/json.html")
    marshal = next(lk for lk in page.links if lk.text == "marshal")
    assert marshal.url == served + "/3/library/marshal.html#module-marshal"
    assert backend.open(marshal.url).doc_id == "pydocs:library/marshal.html"
    # A link off the corpus keeps its real url; in served mode it is refused without a connection.
    rfc = next(lk for lk in page.links if lk.text == "RFC 7159")
    assert rfc.url == "https://datatracker.ietf.org/doc/html/rfc7159.html"
    before = list(network_guard)
    with pytest.raises(BrowserError, match="outside the allowed hosts"):
        backend.open(rfc.url)
    assert network_guard == before


def test_documents_without_a_url_are_served_by_id(served):
    backend = make_web_backend(served, only_search_host=True)
    results = backend.search("plain note", 10)
    note = next(r for r in results if r.title == "A note without a url")
    assert note.url == served + "/doc/notes%2Fodd%20id%3F%231"
    page = backend.open(note.url)
    assert page.doc_id == "notes/odd id?#1"
    assert page.text == "Plain note.\n\nIt links to json."
    assert page.links == [Link("json", served + "/3/library/json.html", 25, 29)]


def test_served_routes(served):
    fetcher = Fetcher(FetchPolicy(allow_hosts=(urlsplit(served).netloc,)))
    health = json.loads(fetcher.fetch(served + "/healthz", accept=("application/json",)).text)
    assert health == {"status": "ok", "documents": len(PAGES) + 1}
    by_id = fetcher.fetch(served + "/doc/pydocs%3Alibrary%2Fcsv.html")
    assert by_id.content_type == "text/html" and "<title>csv" in by_id.text
    with pytest.raises(BrowserError, match="HTTP 404"):
        fetcher.fetch(served + "/3/library/nothing.html")
    with pytest.raises(BrowserError, match="HTTP 400"):
        fetcher.fetch(served + "/search?format=json", accept=("application/json",))
    with pytest.raises(BrowserError, match="HTTP 400"):
        fetcher.fetch(served + "/search?q=x&format=html", accept=("application/json",))
    answer = json.loads(fetcher.fetch(served + "/search?q=csv+reader&format=json&k=2", accept=("application/json",)).text)
    assert answer["query"] == "csv reader" and len(answer["results"]) == 2
    assert {"title", "url", "content", "offset", "doc_id"} <= set(answer["results"][0])


def test_served_pages_escape_everything(network_guard):
    evil = Document(
        id="evil", title="<script>alert('title')</script>", url="https://e.org/evil\"><script>x</script>",
        text="Hello <b>bold</b> & <img src=x onerror=alert(1)>\n\nA link here and a js link.",
        links=[Link("link", 'https://e.org/"><script>alert(1)</script>', 52, 56), Link("js link", "javascript:alert(1)", 68, 75)],
    )
    corpus = Corpus([evil], name="evil")
    server, base = serve_corpus(corpus, TermSearcher(corpus))
    try:
        fetcher = Fetcher(FetchPolicy(allow_hosts=(urlsplit(base).netloc,)))
        raw = fetcher.fetch(base + "/doc/evil").text
        assert "<script>" not in raw and "<b>" not in raw and "<img" not in raw
        assert "<title>&lt;script&gt;alert('title')&lt;/script&gt;</title>" in raw
        assert "javascript:" not in raw
        page = make_web_backend(base, only_search_host=True).open(base + "/doc/evil")
        assert page.title == "<script>alert('title')</script>"
        assert page.text == "Hello <b>bold</b> & <img src=x onerror=alert(1)>\n\nA link here and a js link."
        assert page.links == [Link("link", 'https://e.org/"><script>alert(1)</script>', 52, 56)]
    finally:
        server.close()


def test_served_corpus_with_the_real_bm25_index(docs_corpus):
    from citeenv.index import in_memory_index

    server, base = serve_corpus(docs_corpus, in_memory_index(docs_corpus, "bm25"))
    try:
        backend = make_web_backend(base, only_search_host=True)
        results = backend.search("Unix shell-style wildcards", 3)
        assert results[0].url == base + "/3/library/fnmatch.html"
        page = backend.open(results[0].url)
        assert results[0].offset >= 0
        assert normalize_ws(page.text[results[0].offset:]).startswith(results[0].snippet[:40])
    finally:
        server.close()


def test_server_close_frees_the_port(docs_corpus):
    server, base = serve_corpus(docs_corpus, TermSearcher(docs_corpus))
    server.close()
    with pytest.raises(BrowserError, match="could not connect"):
        Fetcher(FetchPolicy(allow_hosts=(urlsplit(base).netloc,))).fetch(base + "/healthz", accept=("application/json",))


def test_web_backend_refuses_an_empty_page(raw_server):
    pages = raw_server(lambda c, m, p, s: respond(c, 200, b"<html><script>only code</script></html>", {"Content-Type": "text/html"}))
    backend = WebBackend(SearxClient(pages.url(), Fetcher()), Fetcher(FetchPolicy(allow_hosts=(pages.host,))))
    with pytest.raises(BrowserError, match="no readable text"):
        backend.open(pages.url())


def test_serve_command_line():
    parser = argparse.ArgumentParser(prog="citeagent")
    add_serve_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["serve", "--corpus", "pydocs", "--port", "0"])
    assert (args.command, args.corpus, args.port, args.host, args.search) == ("serve", "pydocs", 0, "127.0.0.1", "bm25")
    assert callable(args.func)
