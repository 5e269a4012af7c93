"""The environment under hostile input found by probing: Unicode that changes length when
lowered, lone surrogates, malformed corpus metadata. Each test failed before its fix."""
from __future__ import annotations

from citeenv.browser import BrowserConfig
from citeenv.corpus import Corpus
from citeenv.documents import Document
from citeenv.gym_env import TextBrowserEnv
from citeenv.index import in_memory_index
from citeenv.local import LocalBackend
from citeenv.render import NormalizedText

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
