"""What the browser talks to: a backend that searches and opens pages.

Local corpora and the live web implement the same two calls, so the browser has one code path.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from citeenv.documents import Link


@dataclass(frozen=True)
class SearchResult:
    title: str
    url: str
    snippet: str
    # Where in the page the hit is (a char offset), so a click can open the page there; -1 = top.
    offset: int = -1


@dataclass
class Page:
    title: str
    url: str
    text: str  # plain text; link anchors sit at Link.start:Link.end inside it
    links: list[Link] = field(default_factory=list)
    doc_id: str = ""
    # Where to open the page (a char offset), e.g. the entry a url's #fragment names; -1 = top.
    offset: int = -1
    # Sentence boundaries [[start, end], ...] in `text`, where the corpus knows them (HotpotQA's
    # paragraphs); candidate quotes follow them. None: found by a sentence splitter.
    sentences: list | None = None


class BrowserError(Exception):
    """A failure the browser shows to the agent as an error observation (never a traceback)."""


class Backend(Protocol):
    def search(self, query: str, k: int = 10) -> list[SearchResult]: ...

    def open(self, url: str) -> Page:
        """Return the page at url, or raise BrowserError with a message for the agent."""
        ...
