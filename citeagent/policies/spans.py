"""Short extractive answers, chosen the way the browsing commands are: enumerate candidates, score
each, softmax over them.

Candidates (`answer_candidates`) for a question and its quotes: the options a question offers
("..., A or B?"), yes and no (for questions that start like a yes/no question), and spans of the
quotes: runs of capitalised words, numbers and dates, and short phrases of content words. Each
span is verbatim from one quote and cites that quote (a question's option cites the quotes that
mention it; yes/no cite every quote). Features (`span_features`) pair the question's kind (who,
when, how many, which ... A or B ...) with the span's kind (name, number, year, phrase), and add
the span's and its sentence's MiniLM similarity to the question, how much of it the question
already says, and where it stands. The policy's answer head scores them; see candidate.py.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

_WORD = re.compile(r"[A-Za-z0-9][\w'’.&-]*[\w]|[A-Za-z0-9]")
_YEAR = re.compile(r"^(1[0-9]{3}|20[0-9]{2})s?$")
_NUM = re.compile(r"^[0-9][0-9,.]*$")
_MONTHS = frozenset("january february march april may june july august september october november december".split())
_STOP = frozenset("""a an the of to in on for and or is are was were be been by with as at from that this these those it its
which who whom what when where why how does do did can could should would will not no than there their they he she his
her you your we our into about over under between after before so if also only just any some such both same other more
most has have had being also first""".split())
_JOIN = frozenset("of the de and von van du la for".split())
_YESNO = re.compile(r"^(is|are|was|were|do|does|did|can|could|has|have|had|will|would|should)\b", re.I)
_OPTIONS = re.compile(r",?\s*([^,?]+?)\s+or\s+([^,?]+?)\s*\?\s*$", re.I)
_PAIR = re.compile(r"\b(?i:between|of|among)\s+(?:the\s+)?(?:[a-z]+\s+){0,3}([A-Z][^,?]*?)\s+and\s+([A-Z][^,?]*?)"
                   r"(?:\s*[,?]|\s+(?i:who|which|what)\b)")

QTYPES = ("who", "when", "where", "how many", "how much", "which", "what", "yes/no", "option")
STYPES = ("name", "year", "date", "number", "phrase", "yes", "no", "option")
MAX_SPAN_WORDS = 6
N_SPAN_SCALARS = 12
N_SPAN_FEATURES = len(QTYPES) * len(STYPES) + N_SPAN_SCALARS + 384


@dataclass
class AnswerCandidate:
    text: str
    kind: str  # one of STYPES
    cites: list[int] = field(default_factory=list)  # quote numbers
    quote: int = -1  # the quote the span came from (-1: not a span)
    start: int = -1  # its character offset there


def question_type(question: str) -> str:
    q = question.strip().lower()
    if question_options(question) and not q.startswith(("what", "where", "when", "how")):
        return "option"
    if _YESNO.match(q):
        return "yes/no"
    for t in ("how many", "how much", "who", "when", "where", "which", "what"):
        if re.search(rf"\b{t}\b", q):
            return t
    return "what"


def question_options(question: str) -> list[str]:
    """The two things a comparison question asks to choose between: "..., A or B?", "...: A or B?",
    "Between A and B, which ...?"."""
    m = _OPTIONS.search(question) or _PAIR.search(question)
    if not m:
        return []
    a, b = m.group(1).strip(), m.group(2).strip()
    a = re.split(r"[:,]|\b(?:first|earlier|later|older|younger|larger|smaller|more|less|longer|shorter)\b", a)[-1]
    return [x.strip(" ,:") for x in (a, b) if x.strip(" ,:") and len(x) <= 80]


def _span_kind(words: list[str]) -> str:
    low = [w.lower() for w in words]
    if len(words) == 1 and _YEAR.match(words[0]):
        return "year"
    if any(w in _MONTHS for w in low) and any(_NUM.match(w) for w in words):
        return "date"
    if any(_NUM.match(w) for w in words):
        return "number"
    if words[0][:1].isupper():
        return "name"
    return "phrase"


def answer_candidates(question: str, quotes: list[dict], max_per_quote: int = 40) -> list[AnswerCandidate]:
    """Every candidate answer for the quotes, deduplicated by lowercased text (first kept)."""
    out: list[AnswerCandidate] = []
    seen: set[str] = set()
    numbers = [q["n"] for q in quotes]

    def add(c: AnswerCandidate) -> None:
        key = c.text.lower()
        if c.text and key not in seen:
            seen.add(key)
            out.append(c)

    qtype = question_type(question)
    for opt in question_options(question):
        cites = [q["n"] for q in quotes if opt.lower() in q["text"].lower()] or numbers[:1]
        add(AnswerCandidate(opt, "option", cites))
    if qtype in ("yes/no", "option") or _YESNO.match(question.strip()):
        add(AnswerCandidate("yes", "yes", list(numbers)))
        add(AnswerCandidate("no", "no", list(numbers)))
    q_low = question.lower()
    for quote in quotes:
        text = quote["text"]
        toks = [(m.group(0), m.start(), m.end()) for m in _WORD.finditer(text)]
        spans = []
        i = 0
        while i < len(toks):  # runs of capitalised words (joined by of/the/and ...), and numbers
            w = toks[i][0]
            if w[:1].isupper() or _NUM.match(w):
                j = i + 1
                while j < len(toks) and j - i < MAX_SPAN_WORDS and (
                        toks[j][0][:1].isupper() or _NUM.match(toks[j][0]) or toks[j][0].lower() in _MONTHS
                        or (toks[j][0].lower() in _JOIN and j + 1 < len(toks) and toks[j + 1][0][:1].isupper())) \
                        and text[toks[j - 1][2]:toks[j][1]].strip() in ("", ",", "-"):
                    j += 1
                spans.append((i, j))
                for k in range(i + 1, j):  # and the run's shorter pieces
                    spans.append((i, k))
                    spans.append((k, j))
                i = j
            else:
                i += 1
        for n in (1, 2, 3):  # short phrases of content words
            for i in range(len(toks) - n + 1):
                ws = [t[0].lower() for t in toks[i:i + n]]
                if ws[0] in _STOP or ws[-1] in _STOP:
                    continue
                if any(text[toks[k][2]:toks[k + 1][1]].strip() not in ("", "-") for k in range(i, i + n - 1)):
                    continue
                spans.append((i, i + n))
        kept = 0
        for i, j in spans:
            words = [t[0] for t in toks[i:j]]
            s, e = toks[i][1], toks[j - 1][2]
            span = text[s:e]
            if span.lower() in q_low or all(w.lower() in _STOP for w in words):
                continue
            add(AnswerCandidate(span, _span_kind(words), [quote["n"]], quote["n"], s))
            kept += 1
            if kept >= max_per_quote:
                break
    return out


def span_features(question: str, quotes: list[dict], cands: list[AnswerCandidate], embed) -> np.ndarray:
    """[len(cands), N_SPAN_FEATURES]. embed(texts) -> unit vectors (the policy's cached encoder)."""
    qtype = QTYPES.index(question_type(question))
    q_words = {w.lower() for w in _WORD.findall(question)} - _STOP
    by_n = {q["n"]: (i, q) for i, q in enumerate(quotes)}
    vecs = embed([question] + [c.text for c in cands] + [q["text"] for q in quotes])
    qv, cv, sv = vecs[0], vecs[1:1 + len(cands)], vecs[1 + len(cands):]
    all_text = " ".join(q["text"].lower() for q in quotes)
    out = np.zeros((len(cands), N_SPAN_FEATURES), np.float32)
    o = len(QTYPES) * len(STYPES)
    for j, c in enumerate(cands):
        f = out[j]
        f[qtype * len(STYPES) + STYPES.index(c.kind)] = 1
        words = [w.lower() for w in _WORD.findall(c.text)]
        rank, quote = by_n.get(c.quote, (-1, None))
        f[o] = float(qv @ cv[j])
        f[o + 1] = float(qv @ sv[rank]) if quote is not None else 0.0
        f[o + 2] = len(set(words) & q_words) / max(1, len(words))
        f[o + 3] = min(len(words), MAX_SPAN_WORDS) / MAX_SPAN_WORDS
        f[o + 4] = (rank + 1) / max(1, len(quotes)) if quote is not None else 0.0
        f[o + 5] = c.start / max(1, len(quote["text"])) if quote is not None else 0.0
        f[o + 6] = min(all_text.count(c.text.lower()), 4) / 4
        f[o + 7] = float(c.kind in ("yes", "no", "option"))
        f[o + 8] = len(c.cites) / max(1, len(quotes))
        # the words around the span in its sentence that the question also has (a "born in X" cue)
        if quote is not None:
            left = {w.lower() for w in _WORD.findall(quote["text"][max(0, c.start - 40):c.start])} - _STOP
            right = {w.lower() for w in _WORD.findall(quote["text"][c.start + len(c.text):c.start + len(c.text) + 40])} - _STOP
            f[o + 9] = len(left & q_words) / 3
            f[o + 10] = len(right & q_words) / 3
        f[o + 11] = float(bool(words) and words[0] in ("the", "a", "an"))
        f[o + N_SPAN_SCALARS:] = qv * cv[j]
    return out


def format_answer(c: AnswerCandidate) -> str:
    """The answer text with its citations, e.g. "Arthur's Magazine [1][2]"."""
    return c.text + " " + "".join(f"[{n}]" for n in c.cites) if c.cites else c.text
