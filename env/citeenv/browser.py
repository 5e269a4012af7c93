"""The text browser: a state machine over WebGPT's commands. It knows nothing of Gymnasium or
of policies; `citeenv.gym_env` wraps it. Every step returns an observation; nothing here raises on
bad agent input."""
from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field

from citeenv.backends import Backend, BrowserError, Page, SearchResult
from citeenv import command_spec as spec
from citeenv import observation as obs
from citeenv.command_spec import KEYWORDS, QUOTE_SEP, USAGE
from citeenv.commands import Command, CommandError, parse_command
from citeenv.candidates import CandidateConfig, enumerate_candidates
from citeenv.render import PageView, defang
from citeenv.unicode_text import without_lone_surrogates

_WS = re.compile(r"\s+")
_MARKER = re.compile(r"\[(\d+)\]")


@dataclass
class BrowserConfig:
    max_actions: int = 20
    search_k: int = 8  # results listed per search
    snippet_chars: int = 200
    window_chars: int = 1200
    max_quotes: int = spec.MAX_QUOTES
    max_quote_chars: int = spec.MAX_QUOTE_CHARS
    max_question_chars: int = spec.MAX_QUESTION_CHARS
    max_query_chars: int = spec.MAX_QUERY_CHARS
    max_answer_chars: int = spec.MAX_ANSWER_CHARS
    past_actions_shown: int = 12
    # WebGPT's rule: running out of browsing actions moves the agent to the answering phase
    # rather than ending without an answer. The answer then gets `answer_attempts` tries.
    force_answer_at_limit: bool = True
    answer_attempts: int = 3
    # Enumerate the valid commands into info["candidates"] (citeenv.candidates) for policies that
    # score candidates; None leaves them out.
    candidates: "CandidateConfig | None" = None


@dataclass
class QuoteRecord:
    n: int
    title: str
    url: str
    text: str
    doc_id: str = ""
    start: int = -1
    end: int = -1


@dataclass
class _Results:
    query: str
    results: list[SearchResult]


@dataclass
class _Doc:
    view: PageView
    window: int = 0
    find_cursor: int = -1  # normalised offset of the last Find match
    seen: set = field(default_factory=set)  # windows shown so far (candidates mark moves back to them)


@dataclass
class BrowserState:
    question: str
    quotes: list[QuoteRecord] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)
    history: list = field(default_factory=list)  # earlier views, for Back
    view: _Results | _Doc | None = None
    visited: list[str] = field(default_factory=list)
    phase: str = "browse"  # browse | answer | done
    error: str | None = None
    answer: dict | None = None
    n_invalid: int = 0
    answer_tries: int = 0
    notice: str | None = None  # a message from the browser itself, e.g. the action limit


class Browser:
    def __init__(self, backend: Backend, config: BrowserConfig | None = None):
        self.backend = backend
        self.config = config or BrowserConfig()
        self.state: BrowserState | None = None

    # ------------------------------------------------------------------ episode control
    def reset(self, question: str) -> None:
        if not isinstance(question, str) or not question.strip():
            raise ValueError("The question is empty: give a question as text, e.g. 'What does json.dumps return?'.")
        q = _WS.sub(" ", without_lone_surrogates(question)).strip()
        if len(q) > self.config.max_question_chars:
            raise ValueError(
                f"The question is {len(q)} characters long; the limit is {self.config.max_question_chars}. "
                "Shorten it, or raise BrowserConfig.max_question_chars."
            )
        self.state = BrowserState(question=q)

    @property
    def actions_left(self) -> int:
        s = self.state
        if s.phase == "answer":
            return self.config.answer_attempts - s.answer_tries
        return max(0, self.config.max_actions - len(s.actions))

    def step(self, action: str) -> None:
        """Apply one action. Afterwards `state.error` says why it was rejected (or is None)."""
        s = self.state
        if s is None:
            raise RuntimeError("call reset(question) before step()")
        if s.phase == "done":
            raise RuntimeError("the episode is over; call reset() to start another")
        s.error = None
        s.notice = None
        if isinstance(action, str):  # every backend and file must be able to encode what is accepted
            action = without_lone_surrogates(action)
        if s.phase == "answer":
            s.answer_tries += 1
            self._answer(action)
            if s.error:
                s.n_invalid += 1
                if s.answer_tries >= self.config.answer_attempts:
                    s.phase = "done"  # truncated: no valid answer in the allowed attempts
            return
        shown = action.strip() if isinstance(action, str) else repr(action)
        s.actions.append(shown[:200])
        cmd = parse_command(action, max_arg_chars=max(self.config.max_quote_chars * 2 + 1, self.config.max_query_chars))
        s.error = cmd.message if isinstance(cmd, CommandError) else self._apply(cmd)
        if s.error:
            s.n_invalid += 1
        if s.phase == "browse" and self.actions_left <= 0:
            if self.config.force_answer_at_limit:
                s.phase = "answer"
                s.notice = "The action limit is reached: write the answer now."
            else:
                s.phase = "done"  # truncated

    # ------------------------------------------------------------------ commands
    def _apply(self, cmd: Command) -> str | None:
        s, c = self.state, self.config
        valid = self.valid_commands()
        if cmd.kind not in valid:
            return f'"{cmd.kind}" is not possible here ({self._why_not(cmd.kind)}). Possible now: {", ".join(valid)}.'
        if cmd.kind == "Search":
            query = _WS.sub(" ", cmd.arg).strip()
            if len(query) > c.max_query_chars:
                return f"The query is {len(query)} characters; the limit is {c.max_query_chars}."
            try:
                results = self.backend.search(query, c.search_k)
            except BrowserError as e:
                return f"Search failed: {e}"
            self._go(_Results(query, list(results)))
            return None
        if cmd.kind == "Clicked on link":
            return self._click(cmd.number)
        if cmd.kind == "Find in page:":
            return self._find(cmd.arg)
        if cmd.kind == "Quote:":
            return self._quote(cmd.arg)
        if cmd.kind in ("Scrolled down", "Scrolled up"):
            doc = s.view
            step = cmd.number if cmd.kind == "Scrolled down" else -cmd.number
            # valid_commands() already refused scrolling past an edge; a long jump stops at it
            doc.window = min(max(doc.window + step, 0), doc.view.n_windows - 1)
            doc.find_cursor = -1
            doc.seen.add(doc.window)
            return None
        if cmd.kind == "Top":
            s.view.window = 0
            s.view.find_cursor = -1
            s.view.seen.add(0)
            return None
        if cmd.kind == "Back":
            s.view = s.history.pop()
            return None
        if cmd.kind == "End: Answer":
            s.phase = "answer"
            return None
        if cmd.kind == "End: Decline":
            s.phase = "done"
            s.answer = self._answer_dict("", declined=True)
            return None
        return f"Unhandled command {cmd.kind}"  # unreachable: every keyword is handled above

    def _go(self, view) -> None:
        if self.state.view is not None:
            self.state.history.append(self.state.view)
        self.state.view = view

    def _click(self, k: int) -> str | None:
        s = self.state
        ids = self.link_ids()
        if k not in ids:
            return f"There is no link {k} on this view; links shown: {_fmt_ids(ids)}."
        if isinstance(s.view, _Results):
            res = s.view.results[k]
            url, offset = res.url, res.offset
        else:
            url, offset = s.view.view.page.links[k].url, -1
        try:
            page = self.backend.open(url)
        except BrowserError as e:
            return f"Could not open {url}: {e}"
        view = PageView(page, self.config.window_chars)
        offset = offset if offset >= 0 else page.offset  # a search hit, else the url's #fragment
        window = view.window_of(offset) if offset >= 0 else 0
        self._go(_Doc(view, window, seen={window}))
        s.visited.append(page.url or url)
        return None

    def find_target(self, text: str) -> tuple[int, int] | None:
        """(normalised offset, window) a `Find in page: text` would move to, or None when the text
        does not occur on the page. Search after the last match (so repeating a Find moves on),
        else from the window's start; wrap around once, as a browser's find bar does."""
        doc = self.state.view
        needle = _WS.sub(" ", text).strip()
        norm = doc.view.normalized
        if doc.find_cursor >= 0:
            start = doc.find_cursor + 1
        else:
            start = bisect.bisect_left(norm.offsets, doc.view.window_span(doc.window)[0])
        pos = norm.find_ignoring_case(needle, start)
        if pos < 0:
            pos = norm.find_ignoring_case(needle)
        return None if pos < 0 else (pos, doc.view.window_of(norm.offsets[pos]))

    def _find(self, text: str) -> str | None:
        target = self.find_target(text)
        if target is None:
            return f'"{text[:80]}" does not occur on this page.'
        doc = self.state.view
        doc.find_cursor, doc.window = target
        doc.seen.add(doc.window)
        return None

    def _quote(self, arg: str) -> str | None:
        s, c = self.state, self.config
        if len(s.quotes) >= c.max_quotes:
            return f"There are already {c.max_quotes} quotes, the most an answer may have. Answer with End: Answer."
        view = s.view.view
        norm = view.normalized
        if QUOTE_SEP in arg:
            head, tail = (_WS.sub(" ", x).strip() for x in arg.split(QUOTE_SEP))
            if not head or not tail:
                return f"Both sides of {QUOTE_SEP} need text: Quote: <start>{QUOTE_SEP}<end>."
            a = norm.text.find(head)
            if a < 0:
                return f'The start "{head[:80]}" is not on this page verbatim.'
            b = norm.text.find(tail, a + len(head))
            if b < 0:
                return f'The end "{tail[:80]}" does not occur after the start on this page.'
            lo, hi = a, b + len(tail)
        else:
            want = _WS.sub(" ", arg).strip()
            lo = norm.text.find(want)
            if lo < 0:
                return "That text is not on this page verbatim. Quote text exactly as shown (copy it), or use Quote: <start>━<end>."
            hi = lo + len(want)
        text = norm.text[lo:hi]
        if len(text) > c.max_quote_chars:
            return f"The quote is {len(text)} characters; the limit is {c.max_quote_chars}. Quote less."
        page = view.page
        for q in s.quotes:
            if q.text == text and q.url == page.url:
                return f"That text is already quote [{q.n}]."
        start, end = norm.span(lo, hi)
        s.quotes.append(QuoteRecord(len(s.quotes) + 1, page.title, page.url, text, page.doc_id, start, end))
        return None

    def _answer(self, text) -> None:
        s, c = self.state, self.config
        if not isinstance(text, str) or not text.strip():
            s.error = "The answer is empty. Write the answer as text, citing quotes with [n] markers."
            return
        text = _WS.sub(" ", text).strip()
        if len(text) > c.max_answer_chars:
            s.error = f"The answer is {len(text)} characters; the limit is {c.max_answer_chars}."
            return
        have = {q.n for q in s.quotes}
        bad = sorted({int(m) for m in _MARKER.findall(text)} - have)
        if bad:
            s.error = f"Markers {bad} point at no quote; the quotes are {_fmt_ids(sorted(have))}."
            return
        s.phase = "done"
        s.answer = self._answer_dict(text)

    def _answer_dict(self, text: str, declined: bool = False) -> dict:
        s = self.state
        return {
            "question": s.question,
            "text": text,
            "declined": declined,
            "quotes": [q.__dict__.copy() for q in s.quotes],
        }

    # ------------------------------------------------------------------ what is possible
    def valid_commands(self) -> list[str]:
        s = self.state
        if s.phase != "browse":
            return []
        ok = ["Search"]
        if self.link_ids():
            ok.append("Clicked on link")
        if isinstance(s.view, _Doc):
            ok += ["Find in page:"]
            if len(s.quotes) < self.config.max_quotes:
                ok.append("Quote:")
            if s.view.window < s.view.view.n_windows - 1:
                ok.append("Scrolled down")
            if s.view.window > 0:
                ok += ["Scrolled up", "Top"]
        if s.history:
            ok.append("Back")
        ok += ["End: Answer", "End: Decline"]
        return [k for k in KEYWORDS if k in ok]

    def candidates(self) -> list:
        """The valid commands of this state, enumerated (citeenv.candidates): the action space of
        candidate-scoring policies."""
        return enumerate_candidates(self, self.config.candidates)

    def _why_not(self, kind: str) -> str:
        s = self.state
        if kind in ("Find in page:", "Quote:", "Top", "Scrolled down", "Scrolled up") and not isinstance(s.view, _Doc):
            return "no page is open"
        if kind == "Quote:":
            return "the quote limit is reached"
        if kind == "Back":
            return "there is no earlier page"
        if kind == "Clicked on link":
            return "this view has no links"
        if kind.startswith("Scrolled") or kind == "Top":
            edge = "end" if kind == "Scrolled down" else "top"
            return f"already at the {edge} of the page, window {s.view.window + 1} of {s.view.view.n_windows}"
        return "not valid now"

    def link_ids(self) -> list[int]:
        v = self.state.view
        if isinstance(v, _Results):
            return list(range(len(v.results)))
        if isinstance(v, _Doc):
            return v.view.links_in(v.window)
        return []

    def window_text(self) -> str:
        v = self.state.view
        if not isinstance(v, _Doc):
            return ""
        lo, hi = v.view.window_span(v.window)
        return v.view.page.text[lo:hi]

    def quotable_text(self) -> str:
        v = self.state.view
        return v.view.quotable(v.window) if isinstance(v, _Doc) else ""

    # ------------------------------------------------------------------ observation
    def observation(self) -> str:
        s, c = self.state, self.config
        lines = [f"{obs.QUESTION}{s.question}", obs.QUOTES]
        if s.quotes:
            for q in s.quotes:
                lines.append(f"[{q.n}] {q.title} ({q.url})")
                lines.append(f'"{q.text}"')
        else:
            lines.append("(none)")
        if s.phase == "done" and s.answer is not None:
            lines.append("Declined to answer." if s.answer["declined"] else f"Answer: {s.answer['text']}")
            lines.append("(episode over)")
            return "\n".join(lines)
        if s.phase == "answer":
            if s.notice:
                lines.append(s.notice)
            if s.error:
                lines.append(f"{obs.ERROR}{s.error}")
            lines.append(obs.WRITE_ANSWER)
            lines.append(obs.ANSWER_PROMPT)
            return "\n".join(lines)
        past = s.actions[-c.past_actions_shown:]
        lines.append(obs.PAST_ACTIONS + (" | ".join(past) if past else "(none)"))
        lines.extend(self._render_view())
        if s.error:
            lines.append(f"{obs.ERROR}{s.error}")
        lines.append(f"{obs.ACTIONS_LEFT}{self.actions_left}")
        lines.append(obs.NEXT_ACTION)
        return "\n".join(lines)

    def _render_view(self) -> list[str]:
        v, c = self.state.view, self.config
        if v is None:
            return [f"{obs.CURRENT_PAGE}(none yet; start with Search <query>)"]
        if isinstance(v, _Results):
            out = [f'{obs.CURRENT_PAGE}search results for "{v.query}"']
            if not v.results:
                out.append("(no results; try other words)")
            for i, r in enumerate(v.results):
                snippet = _WS.sub(" ", r.snippet).strip()
                if len(snippet) > c.snippet_chars:
                    snippet = snippet[: c.snippet_chars].rsplit(" ", 1)[0] + " ..."
                out.append(f"【{i}†{defang(r.title)}】 {defang(r.url)}")
                out.append(f"  {defang(snippet)}")
            return out
        page = v.view.page
        return [
            f"{obs.CURRENT_PAGE}{page.title} ({page.url})",
            v.view.render(v.window),
            f"{obs.WINDOW_POSITION}{v.window + 1} of {v.view.n_windows})",
        ]

    def info(self) -> dict:
        s, c = self.state, self.config
        v = s.view
        info = {
            "phase": s.phase,
            "question": s.question,
            "valid_commands": self.valid_commands(),
            "link_ids": self.link_ids() if s.phase == "browse" else [],
            "quotable_text": self.quotable_text() if s.phase == "browse" else "",
            "window_text": self.window_text() if s.phase == "browse" else "",
            "quote_numbers": [q.n for q in s.quotes],
            "quotes": [q.__dict__.copy() for q in s.quotes],
            "actions_left": self.actions_left,
            "error": s.error,
            "past_actions": list(s.actions),
            "visited": list(s.visited),
            "view": "results" if isinstance(v, _Results) else "document" if isinstance(v, _Doc) else "none",
            "n_invalid": s.n_invalid,
            "limits": {"max_query_chars": c.max_query_chars, "max_quote_chars": c.max_quote_chars,
                       "max_quotes": c.max_quotes, "max_answer_chars": c.max_answer_chars},
        }
        if self.config.candidates is not None:
            info["candidates"] = [c.to_dict() for c in self.candidates()]
        if isinstance(v, _Results):
            info["results"] = [{"id": i, "title": r.title, "url": r.url, "snippet": r.snippet} for i, r in enumerate(v.results)]
        if isinstance(v, _Doc):
            info["page"] = {"title": v.view.page.title, "url": v.view.page.url, "window": v.window, "n_windows": v.view.n_windows}
        if s.answer is not None:
            info["answer"] = s.answer
        return info


def _fmt_ids(ids: list[int]) -> str:
    if not ids:
        return "none"
    return ", ".join(map(str, ids[:30])) + (" ..." if len(ids) > 30 else "")


__all__ = ["Browser", "BrowserConfig", "BrowserState", "QuoteRecord", "USAGE", "Page"]
