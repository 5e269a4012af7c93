"""The valid commands of a browser state, enumerated: the action space of candidate-scoring
policies (DRRN, He et al. 2016; CALM, Yao et al. 2020).

A generating policy may type any command; a scoring policy chooses among these. Every candidate
is a command the browser accepts in that state (tests check it), so a policy that picks one never
wastes an action on an invalid command, and its softmax over the list gives exact log-probs.

What is enumerated, per state:
- Search: the question itself (until searched), and names found in the quotes and the open page
  (capitalised phrases, the quoted pages' titles) that have not been searched: the bridge
  entities of multi-hop questions;
- Clicked on link: each search result, or each link of the page's window;
- Quote: each sentence of the page's window (the corpus's own sentence boundaries when it has
  them, e.g. HotpotQA, else a sentence splitter), verbatim, not yet quoted, within the limits;
- Scrolled down 1 / Scrolled up 1 / Back, when possible;
- End: Answer (once there is a quote) and End: Decline (always: a state is never without a choice).

The answering phase has no command candidates: the answer text is the policy's to write.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from citeenv.command_spec import QUOTE_SEP

_WS = re.compile(r"\s+")
# A sentence ends at . ! ? followed by space and a capital, digit or quote; abbreviations such as
# "e.g. the" are left joined because a lower-case word follows.
_SENT_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(\[`])")
# Capitalised phrases of up to five words, e.g. "Arthur's Magazine", "New York City".
_NAME = re.compile(r"\b[A-Z][\w'’-]*(?:\s+(?:of|the|de|and|von|van|du|la|[A-Z][\w'’-]*)){0,4}")
_NAME_STOP = frozenset("The A An In On At It He She They This That These Those His Her Its Their When Where "
                       "What Which Who Whom Why How Is Are Was Were And But Or If As For From By With".split())


@dataclass(frozen=True)
class CandidateConfig:
    max_queries: int = 6  # Search candidates per state, the question first
    min_quote_chars: int = 12
    max_links: int = 20


@dataclass(frozen=True)
class Candidate:
    command: str  # the exact command text, valid in this state
    kind: str  # the command keyword: one of citeenv.commands.KEYWORDS
    text: str = ""  # what the command is about: the query, the result's title and snippet, the sentence
    rank: int = -1  # a result's or link's position, a sentence's index in the window
    url: str = ""  # the page a click opens, or the page a quote is from
    title: str = ""  # that page's title
    visited: bool = False  # the click's page was opened before in this episode

    def to_dict(self) -> dict:
        # dataclasses.asdict deep-copies field by field: a fifth of a step's time on a 10-paragraph corpus
        return {"command": self.command, "kind": self.kind, "text": self.text, "rank": self.rank, "url": self.url,
                "title": self.title, "visited": self.visited}


def split_sentences(text: str) -> list[tuple[int, int]]:
    """[start, end) spans of the sentences of `text`, whitespace around them excluded."""
    spans, pos = [], 0
    for m in _SENT_END.finditer(text):
        spans.append((pos, m.start()))
        pos = m.end()
    spans.append((pos, len(text)))
    out = []
    for a, b in spans:
        while a < b and text[a].isspace():
            a += 1
        while b > a and text[b - 1].isspace():
            b -= 1
        if b > a:
            out.append((a, b))
    return out


def names_in(text: str) -> list[str]:
    """Capitalised phrases of `text`, in order, without a leading stop word."""
    out = []
    for m in _NAME.finditer(text):
        words = re.sub(r"['’]s$", "", m.group(0)).rstrip("'’-").split()
        while words and words[0] in _NAME_STOP:
            words = words[1:]
        while words and words[-1].lower() in ("of", "the", "de", "and", "von", "van", "du", "la"):
            words = words[:-1]
        if words and len(" ".join(words)) >= 3:
            out.append(" ".join(words))
    return out


def enumerate_candidates(browser, config: CandidateConfig | None = None) -> list[Candidate]:
    """The candidates of the browser's current state (empty outside the browsing phase)."""
    from citeenv.browser import _Doc, _Results  # the browser's own view types

    c = config or CandidateConfig()
    s = browser.state
    if s is None or s.phase != "browse":
        return []
    valid = set(browser.valid_commands())
    out: list[Candidate] = []
    searched = {_WS.sub(" ", a[len("Search "):]).strip().lower() for a in s.actions if a.startswith("Search ")}
    if "Search" in valid:
        for q in _queries(s, browser, c, searched):
            out.append(Candidate(f"Search {q}", "Search", q))
    view = s.view
    if "Clicked on link" in valid:
        visited = set(s.visited)
        if isinstance(view, _Results):
            for i, r in enumerate(view.results):
                out.append(Candidate(f"Clicked on link {i}", "Clicked on link", _WS.sub(" ", f"{r.title}. {r.snippet}").strip(),
                                     rank=i, url=r.url, title=r.title, visited=r.url in visited))
        elif isinstance(view, _Doc):
            page = view.view.page
            for k in browser.link_ids()[: c.max_links]:
                lk = page.links[k]
                out.append(Candidate(f"Clicked on link {k}", "Clicked on link", _WS.sub(" ", lk.text).strip(),
                                     rank=k, url=lk.url, title=lk.text, visited=lk.url in visited))
    if "Quote:" in valid and isinstance(view, _Doc):
        out.extend(_quotes(browser, view, c))
    for kind, command in (("Scrolled down", "Scrolled down 1"), ("Scrolled up", "Scrolled up 1"), ("Back", "Back"),
                          ("End: Answer", "End: Answer")):
        if kind in valid and (kind != "End: Answer" or s.quotes):
            out.append(Candidate(command, kind))
    out.append(Candidate("End: Decline", "End: Decline"))
    return out


def _queries(s, browser, c: CandidateConfig, searched: set[str]) -> list[str]:
    from citeenv.browser import _Doc

    limit = browser.config.max_query_chars
    pool = [s.question]
    for q in reversed(s.quotes):  # the newest evidence names the next hop
        pool.extend(names_in(q.text))
    if isinstance(s.view, _Doc):
        pool.extend(names_in(browser.quotable_text()))
    seen, out = set(), []
    question = s.question.lower()
    for i, q in enumerate(pool):
        q = _WS.sub(" ", q).strip()[:limit].strip()
        key = q.lower()
        if not q or key in seen or key in searched:
            continue
        # A name the question already spells out is found by searching the question itself.
        if i > 0 and key in question:
            continue
        seen.add(key)
        out.append(q)
        if len(out) >= c.max_queries:
            break
    return out


def _quotes(browser, view, c: CandidateConfig) -> list[Candidate]:
    page = view.view.page
    lo, hi = view.view.window_span(view.window)
    taken = {q.text for q in browser.state.quotes if q.url == page.url}
    spans = page.sentences or split_sentences(page.text)
    out = []
    for a, b in spans:
        if a >= hi or b <= lo:
            continue
        a, b = max(a, lo), min(b, hi)  # a sentence cut by the window's edge is quoted in part
        text = _WS.sub(" ", page.text[a:b]).strip()
        if len(text) < c.min_quote_chars or len(text) > browser.config.max_quote_chars or text in taken:
            continue
        if QUOTE_SEP in text:  # the quote separator cannot be quoted as plain text
            continue
        taken.add(text)
        out.append(Candidate(f"Quote: {text}", "Quote:", text, rank=len(out), url=page.url, title=page.title))
    return out
