"""The environment under hostile input found by probing: Unicode that changes length when
lowered, lone surrogates, malformed corpus metadata. Each test failed before its fix."""
from __future__ import annotations

import json
import time

from citeenv.browser import BrowserConfig
from citeenv.corpus import Corpus
from citeenv.documents import Document, Link
from citeenv.gym_env import TextBrowserEnv
from citeenv.index import in_memory_index
from citeenv.local import LocalBackend
from citeenv.render import NormalizedText
from citeenv.web.backend import make_web_backend
from citeenv.web.fetch import Fetcher, FetchPolicy
from citeenv.web.html import SLOW_MARK, render_html
from citeenv.web.searx import SearxClient
from citeenv.web.serve import serve_corpus
from web_support import network_guard  # noqa: F401 - fixture: only loopback connections

# "İ" (U+0130) lowers to two characters, "i" and a combining dot.
DOTTED = "\u0130"


def local_env(docs: list[Document], **config) -> TextBrowserEnv:
    corpus = Corpus(docs, name="hostile")
    return TextBrowserEnv(LocalBackend(corpus, in_memory_index(corpus, "bm25")), BrowserConfig(**config))


def open_first(env: TextBrowserEnv, query: str) -> dict:
    env.reset(options={"question": "where is the target?"})
    *_, info = env.step(f"Search {query}")
    *_, info = env.step("Clicked on link 0")
    assert info["error"] is None and info["view"] == "document"
    return info


def test_find_after_characters_that_grow_when_lowered_lands_on_the_match():
    text = f"Istanbul {DOTTED}stanbul " * 300 + "\n\nThe target sentence is here at the end."
    env = local_env([Document("tr", "Turkish cities", "https://example.org/tr", text)], window_chars=400)
    info = open_first(env, "istanbul target")
    obs, *_, info = env.step("Find in page: TARGET sentence")
    assert info["error"] is None
    assert info["page"]["window"] == info["page"]["n_windows"] - 1
    assert "The target sentence" in info["quotable_text"]


def test_case_insensitive_find_maps_back_to_original_offsets():
    norm = NormalizedText.of(f"{DOTTED}{DOTTED}  ab\u00dfC {DOTTED}x")
    pos = norm.find_ignoring_case("AB")
    assert norm.text[pos:pos + 2] == "ab"
    assert norm.text[norm.find_ignoring_case(f"{DOTTED.lower()}x"):] == f"{DOTTED}x"
    assert norm.find_ignoring_case("c", start=norm.text.index("C")) == norm.text.index("C")
    assert norm.find_ignoring_case("missing") == -1


def test_a_malformed_anchor_in_corpus_metadata_opens_the_page_at_the_top():
    docs = [Document("a", "Anchored page", "https://example.org/a", "Alpha text about anchors and more.",
                     meta={"anchors": {"bad": "not a number", "huge": 10**30, "neg": -5, "good": 6}}),
            Document("b", "Links page", "https://example.org/b", "Links: bad huge neg good",
                     links=[Link(name, f"https://example.org/a#{name}", start, start + len(name))
                            for name, start in (("bad", 7), ("huge", 11), ("neg", 16), ("good", 20))])]
    env = local_env(docs)
    open_first(env, "links bad huge")
    for i in range(4):
        *_, info = env.step(f"Clicked on link {i}")
        assert info["error"] is None and info["page"]["url"] == "https://example.org/a"
        env.step("Back")


def test_corpus_records_with_malformed_links_are_skipped_not_fatal(tmp_path):
    path = tmp_path / "hostile.jsonl"
    rows = [{"id": "ok", "text": "fine text"}, {"id": "l1", "text": "x", "links": [{"url": "https://e.org", "start": "abc"}]},
            {"id": "l2", "text": "y", "links": 5}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + '\n{"id": "l3", "text": "z", "links": [["t", "u", 1e400]]}\n')
    corpus = Corpus.from_jsonl(path)
    assert [d.id for d in corpus.documents] == ["ok"]


def test_web_search_with_a_lone_surrogate_is_answered(network_guard):
    docs = [Document("cafe", "Cafe", "https://example.org/cafe", "The cafe serves coffee and tea.")]
    corpus = Corpus(docs, name="web")
    server, base_url = serve_corpus(corpus, in_memory_index(corpus, "bm25"))
    try:
        env = TextBrowserEnv(make_web_backend(base_url, only_search_host=True))
        env.reset(options={"question": "what does the caf\ud800 serve?"})
        obs, *_, info = env.step("Search caf\ud800e coffee")
        assert info["view"] == "results" and info["error"] is None
        assert "\ufffd" in obs and "\ud800" not in obs
        *_, info = env.step("Clicked on link 0")
        assert info["error"] is None
        *_, info = env.step("Quote: serves coffee\ud800")
        assert "not on this page" in info["error"]
        client = SearxClient(base_url, Fetcher(FetchPolicy(allow_private=True)))
        assert [r.title for r in client.search("caf\ud800e coffee", 3)] == ["Cafe"]
    finally:
        server.close()


def test_rendering_stops_at_its_deadline_and_says_so():
    html = "<p>word</p>" * 5000
    assert render_html(html, "https://example.org/").text.count("word") == 5000
    page = render_html(html, "https://example.org/", deadline=time.monotonic() - 1)
    assert page.text.endswith(SLOW_MARK) and page.text.count("word") < 5000


def test_a_page_open_shares_one_deadline_across_fetch_and_render(network_guard):
    docs = [Document("d", "Doc", "https://example.org/d", "Some text to search for.")]
    corpus = Corpus(docs, name="deadline")
    server, base_url = serve_corpus(corpus, in_memory_index(corpus, "bm25"))
    try:
        backend = make_web_backend(base_url, only_search_host=True)
        backend.open_timeout = 0.0  # the step's time is already spent: nothing is fetched or rendered
        env = TextBrowserEnv(backend)
        env.reset(options={"question": "text?"})
        env.step("Search text")
        *_, info = env.step("Clicked on link 0")
        assert info["view"] == "results" and "timed out" in info["error"]
    finally:
        server.close()
