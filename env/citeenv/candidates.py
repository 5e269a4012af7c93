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
  them, e.g. HotpotQA, else a sentence splitter that keeps a documented signature line with the
  first sentence of its description), verbatim, not yet quoted, within the limits;
- Find in page: the question's identifiers and names (`json.dumps`, `dumps`, `max_workers`,
  "Arthur's Magazine") that occur on the open page outside the window, the text around where the
  find lands as the candidate's text: the long pages of documentation are read by jumping, not by
  scrolling through dozens of windows;
- Scrolled down 1 / Scrolled up 1 / Back, when possible. A scroll or a find that returns to a window
  already shown on this page is marked `visited` (a policy that re-reads windows can loop forever);
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
    max_finds: int = 3  # Find in page candidates per state
    find_context_chars: int = 160  # the text after a find's landing point, the candidate's text
    # a signature line is quoted with its description's first sentence when both fit in this many
    # characters (split_sentences); 0 quotes them apart
    signature_join_chars: int = 400


@dataclass(frozen=True)
class Candidate:
    command: str  # the exact command text, valid in this state
    kind: str  # the command keyword: one of citeenv.commands.KEYWORDS
    text: str = ""  # what the command is about: the query, the result's title and snippet, the sentence
    rank: int = -1  # a result's or link's position, a sentence's index in the window, the window a move lands on
    url: str = ""  # the page a click opens, or the page a quote is from
    title: str = ""  # that page's title
    visited: bool = False  # the click's page was opened before in this episode; a move's window was shown

    def to_dict(self) -> dict:
        # dataclasses.asdict deep-copies field by field: a fifth of a step's time on a 10-paragraph corpus
        return {"command": self.command, "kind": self.kind, "text": self.text, "rank": self.rank, "url": self.url,
                "title": self.title, "visited": self.visited}


# Blocks end at a blank line (a paragraph break), and at a line break after a line ending in ")"
# before a capital: the signature line of a documented function, followed by its description.
_BLOCK_END = re.compile(r"(?P<paragraph>\n[ \t]*\n\s*)|(?<=\))[ \t]*\n(?=[ \t]*[A-Z])")
# A signature on a line of its own, which some pages (the language reference's topics) follow with a
# blank line before the description: "str.split(sep=None, maxsplit=- 1)".
_SIGNATURE = re.compile(r"(?:(?:class|classmethod|staticmethod|async def|def)\s+)?[A-Za-z_][\w.]*\([^\n]*\)")


def split_sentences(text: str, join_signature_chars: int = 0) -> list[tuple[int, int]]:
    """[start, end) spans of the sentences of `text`, whitespace around them excluded.

    join_signature_chars > 0: a signature line and the first sentence of its description are one
    span when together they are at most this long ("math.atanh(x, /) Return the inverse hyperbolic
    tangent of x."). Documentation's evidence is that pair: the signature alone says neither what a
    function does nor returns, the sentence alone does not say which function it is about."""
    spans, pos, joins = [], 0, set()
    for block in _BLOCK_END.finditer(text):
        spans.extend(_sentences(text, pos, block.start()))
        if join_signature_chars and spans and (block.group("paragraph") is None
                                               or _SIGNATURE.fullmatch(text[spans[-1][0]:spans[-1][1]])):
            joins.add(len(spans) - 1)  # the signature line's span: join it with the next one
        pos = block.end()
    spans.extend(_sentences(text, pos, len(text)))
    out = []
    for i, (a, b) in enumerate(spans):
        if i - 1 in joins and out and out[-1] == spans[i - 1] and b - spans[i - 1][0] <= join_signature_chars:
            out[-1] = (spans[i - 1][0], b)
        else:
            out.append((a, b))
    return out


def _sentences(text: str, lo: int, hi: int) -> list[tuple[int, int]]:
    spans, pos = [], lo
    for m in _SENT_END.finditer(text, lo, hi):
        spans.append((pos, m.start()))
        pos = m.end()
    spans.append((pos, hi))
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
    if "Find in page:" in valid and isinstance(view, _Doc):
        out.extend(_finds(browser, view, c))
    for kind, command, step in (("Scrolled down", "Scrolled down 1", 1), ("Scrolled up", "Scrolled up 1", -1)):
        if kind in valid:
            target = view.window + step
            out.append(Candidate(command, kind, rank=target, visited=target in view.seen))
    for kind, command in (("Back", "Back"), ("End: Answer", "End: Answer")):
        if kind in valid and (kind != "End: Answer" or s.quotes):
            out.append(Candidate(command, kind))
    out.append(Candidate("End: Decline", "End: Decline"))
    return out


# Identifiers as questions about code write them: dotted (json.dumps), snake_case (max_workers),
# camelCase / CapWords with an inner capital (JSONDecoder, getLogger).
_IDENT = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+|[A-Za-z]\w*_\w+|_\w+|[A-Za-z]+[a-z0-9][A-Z]\w*")


def find_terms(question: str) -> list[str]:
    """What a reader would type into the find bar for this question: its identifiers (a dotted
    name, then its last part), then its names; longest first within each kind, no repeats."""
    terms = []
    for m in sorted(_IDENT.findall(question), key=len, reverse=True):
        terms.append(m.strip("."))
        if "." in m:
            terms.append(m.rsplit(".", 1)[1])
    terms.extend(names_in(question))
    seen, out = set(), []
    for x in terms:
        if len(x) >= 3 and x.lower() not in seen:
            seen.add(x.lower())
            out.append(x)
    return out


def _finds(browser, view, c: CandidateConfig) -> list[Candidate]:
    out = []
    page = view.view.page
    norm = view.view.normalized
    for term in find_terms(browser.state.question):
        target = browser.find_target(term)
        if target is None or target[1] == view.window:
            continue
        pos, window = target
        context = norm.text[pos: pos + c.find_context_chars]
        out.append(Candidate(f"Find in page: {term}", "Find in page:", _WS.sub(" ", context).strip(), rank=window,
                             url=page.url, title=page.title, visited=window in view.seen))
        if len(out) >= c.max_finds:
            break
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
    spans = page.sentences or split_sentences(page.text, c.signature_join_chars)
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
