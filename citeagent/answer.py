"""A cited answer: text with [n] markers pointing at numbered verbatim quotes.

Exports: JSON, a terminal rendering, and GopherCite's `%<claim>%(title)%[quote]%` syntax.
"""
from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field

MARKER = re.compile(r"\[(\d+)\]")
_SENT = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")


MAX_QUOTE_NUMBER = 1_000_000
MAX_OFFSET = 2**53  # char offsets; beyond this a number is no offset into any page


def _whole_number(value, what: str, low: int, high: int) -> int:
    """value as an int in [low, high], or a ValueError naming the field. JSON allows numbers like
    1e400 (infinity once parsed) or 1e30, which int() turns into OverflowError or a huge number."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    elif isinstance(value, str) and value.strip().lstrip("-").isdigit() and len(value.strip()) <= 20:
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ValueError(f"{what} must be a whole number from {low} to {high}, got {str(value)[:40]}")
    return value


@dataclass
class Quote:
    n: int  # 1-based number the answer's [n] markers use
    title: str
    url: str
    text: str  # verbatim from the page
    doc_id: str = ""
    start: int = -1  # char offsets into the page text, -1 when unknown
    end: int = -1


@dataclass
class Answer:
    question: str
    text: str
    quotes: list[Quote] = field(default_factory=list)
    declined: bool = False

    # --- markers -------------------------------------------------------------------------
    def markers(self) -> list[int]:
        return [int(m) for m in MARKER.findall(self.text)]

    def dangling_markers(self) -> list[int]:
        """Markers that point at no quote."""
        have = {q.n for q in self.quotes}
        return sorted({m for m in self.markers() if m not in have})

    def quote(self, n: int) -> Quote | None:
        return next((q for q in self.quotes if q.n == n), None)

    def statements(self) -> list[tuple[str, list[int]]]:
        """Split the answer into sentences, each with the quote numbers it cites.

        A trailing run of markers after a sentence's full stop (`... done. [1][2]`) belongs to
        that sentence, as ALCE attributes citations."""
        text = self.text.strip()
        if not text:
            return []
        text = re.sub(r"([.!?])\s*((?:\[\d+\]\s*)+)", lambda m: " " + m.group(2).strip() + m.group(1) + " ", text)
        out = []
        for sent in _SENT.split(text):
            sent = sent.strip()
            if not sent:
                continue
            cites = [int(m) for m in MARKER.findall(sent)]
            clean = re.sub(r"\s+", " ", MARKER.sub("", sent)).strip()
            clean = re.sub(r"\s+([.,;:!?])", r"\1", clean)
            if clean:
                out.append((clean, cites))
        return out

    def plain_text(self) -> str:
        return re.sub(r"\s+([.,;:!?])", r"\1", re.sub(r"\s+", " ", MARKER.sub("", self.text))).strip()

    # --- exports -------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self, **kw) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, **kw)

    @classmethod
    def from_dict(cls, d: dict) -> "Answer":
        if not isinstance(d, dict):
            raise ValueError(f"an answer must be a JSON object, got {type(d).__name__}")
        if "question" not in d or "text" not in d and "answer" not in d:
            raise ValueError("an answer needs the fields 'question' and 'text' (or 'answer')")
        quotes = []
        for i, q in enumerate(d.get("quotes") or [], start=1):
            if isinstance(q, str):
                q = {"text": q}
            if not isinstance(q, dict) or "text" not in q:
                raise ValueError(f"quote {i} must be an object with a 'text' field")
            quotes.append(
                Quote(
                    n=_whole_number(q.get("n", i), f"quote {i}'s number 'n'", 0, MAX_QUOTE_NUMBER),
                    title=str(q.get("title") or ""),
                    url=str(q.get("url") or ""),
                    text=str(q["text"]),
                    doc_id=str(q.get("doc_id") or ""),
                    start=_whole_number(q.get("start", -1), f"quote {i}'s 'start'", -1, MAX_OFFSET),
                    end=_whole_number(q.get("end", -1), f"quote {i}'s 'end'", -1, MAX_OFFSET),
                )
            )
        text = d.get("text", d.get("answer"))
        return cls(question=str(d["question"]), text=str(text or ""), quotes=quotes, declined=bool(d.get("declined", False)))

    def to_gophercite(self) -> str:
        """GopherCite's inline syntax, one `%<claim>%(title)%[quote]%` block per cited quote."""
        if self.declined:
            return "%<I decline to answer.>%"
        claim = self.plain_text()
        cited = [self.quote(n) for n in dict.fromkeys(self.markers())] or self.quotes
        blocks = [f"%<{claim}>%({q.title})%[{q.text}]%" for q in cited if q is not None]
        return "\n".join(blocks) if blocks else f"%<{claim}>%"

    def render(self, width: int = 100) -> str:
        """What a person reads in a terminal: the answer, then the numbered quotes with sources."""
        import textwrap

        lines = []
        if self.declined:
            lines.append("The agent declined to answer: it found no evidence it could quote.")
        else:
            lines.append(textwrap.fill(self.text, width) if self.text else "(empty answer)")
        if self.quotes:
            lines.append("")
            lines.append("Sources:")
            for q in self.quotes:
                lines.append(f"[{q.n}] {q.title} <{q.url}>")
                lines.append(textwrap.indent(textwrap.fill(f'"{q.text}"', width - 4), "    "))
        bad = self.dangling_markers()
        if bad:
            lines.append(f"warning: markers {bad} point at no quote")
        return "\n".join(lines)


def render_for_model(question: str, answer: Answer) -> str:
    """One text of (question, answer, quotes), the form reward models and judges read."""
    parts = [f"Question: {question}", f"Answer: {answer.text if not answer.declined else '(declined)'}"]
    for q in answer.quotes:
        parts.append(f"[{q.n}] {q.title}: {q.text}")
    return "\n".join(parts)
