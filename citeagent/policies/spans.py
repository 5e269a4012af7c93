"""Short extractive answers, chosen the way the browsing commands are: enumerate candidates, score
each, softmax over them.

Candidates (`answer_candidates`) for a question and its quotes: the options a question offers
("..., A or B?"), yes and no (for questions that start like a yes/no question), and spans of the
quotes: runs of capitalised words, numbers and dates, code names (`__enter__`, `str.split`,
`pow(2,n)`), short phrases of content words ("more tightly", "nearest enclosing loop"), and
clauses (a sentence's pieces between punctuation, and its "if ..."/"when ..." conditions, so that
documentation answers such as "when the function definition is executed" are reachable). Each
span is verbatim from one quote and cites that quote (a question's option cites the quotes that
mention it; yes/no cite every quote). Features (`span_features`) pair the question's kind (who,
when, how many, which ... A or B ...) with the span's kind (name, number, year, code, phrase,
clause), and add the span's and its sentence's MiniLM similarity to the question, how much of it
the question already says, and where it stands. The policy's answer head scores them; see
candidate.py.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

# words, and code names that start with underscores ("__len__"); a short call ("pow(2,n)") is a
# candidate of its own besides its words
_WORD = re.compile(r"[A-Za-z0-9_][\w'’.&-]*[\w]|[A-Za-z0-9]")
_CALL = re.compile(r"(?<![\w.])[A-Za-z_][\w.]*\([\w ,.=*'\"-]{0,24}\)")
_CODE = re.compile(r"^_|\w_\w|\w\.[A-Za-z_]|\)$|^[a-z]+[A-Z]")
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
STYPES = ("name", "year", "date", "number", "code", "phrase", "clause", "yes", "no", "option")
MAX_SPAN_WORDS = 6  # of a run of names or numbers
MAX_PHRASE_WORDS = 4
MAX_CLAUSE_WORDS = 12
# function words that can open a short phrase answer: "more tightly", "not allowed", "no limit"
_LEADS = frozenset("not no more less most never only".split())
# where a sentence's pieces end: punctuation, but not the comma or brackets inside "pow(2,n)" or "f()"
_CLAUSE_CUT = re.compile(r",(?=\s)|[;:\[\]]|\s\(|(?<![(\w])\)|\)(?=\s|$)(?<!\(\))|\s[-–—]\s|\.\s|\.$")
_CONDITION = re.compile(r"\b(?:if|when|unless|whenever|because|until)\b", re.I)
N_SPAN_SCALARS = 14
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
    opts = [x.strip(" ,:") for x in (a, b)]
    # a long "option" is a clause the "or" happens to end ("... bytes-like object or ASCII string")
    if not all(opts) or any(len(x) > 80 or len(x.split()) > 7 for x in opts):
        return []
    return opts


def _span_kind(words: list[str]) -> str:
    low = [w.lower() for w in words]
    if len(words) == 1 and _CODE.search(words[0]):
        return "code"
    if len(words) == 1 and _YEAR.match(words[0]):
        return "year"
    if any(w in _MONTHS for w in low) and any(_NUM.match(w) for w in words):
        return "date"
    if any(_NUM.match(w) for w in words):
        return "number"
    if words[0][:1].isupper():
        return "name"
    return "phrase"


def answer_candidates(question: str, quotes: list[dict], max_per_quote: int = 64,
                      proposed: list | None = None) -> list[AnswerCandidate]:
    """Every candidate answer for the quotes, deduplicated by lowercased text (first kept).
    `proposed`: the answer reader's spans (citeagent.policies.reader), added where the
    enumeration lacks them (a reader span is verbatim from the quote it cites)."""
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
        if len(text) > 2000:  # a quote is a sentence or two; a longer one is read at its start
            text = text[:2000]
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
        for n in range(1, MAX_PHRASE_WORDS + 1):  # short phrases of content words; clauses after the pairs
            if n == 3:
                spans.extend(_clauses(text, toks))
            for i in range(len(toks) - n + 1):
                ws = [t[0].lower() for t in toks[i:i + n]]
                if (ws[0] in _STOP and not (n > 1 and ws[0] in _LEADS)) or ws[-1] in _STOP:
                    continue
                if any(text[toks[k][2]:toks[k + 1][1]].strip() not in ("", "-") for k in range(i, i + n - 1)):
                    continue
                spans.append((i, i + n))
        kept = 0
        for m in _CALL.finditer(text):
            if m.group(0).lower() not in q_low:
                add(AnswerCandidate(m.group(0), "code", [quote["n"]], quote["n"], m.start()))
                kept += 1
        for i, j in spans:
            words = [t[0] for t in toks[i:j]]
            s, e = toks[i][1], toks[j - 1][2]
            span = text[s:e]
            if span.lower() in q_low or all(w.lower() in _STOP for w in words):
                continue
            kind = "clause" if j - i > MAX_SPAN_WORDS or (j - i > MAX_PHRASE_WORDS and not words[0][:1].isupper()) \
                else _span_kind(words)
            add(AnswerCandidate(span, kind, [quote["n"]], quote["n"], s))
            kept += 1
            if kept >= max_per_quote:
                break
    by_n = {q["n"]: q["text"] for q in quotes}
    for r in proposed or []:
        if r.kind == "span" and r.cites and r.text.lower() not in q_low:
            start = by_n.get(r.cites[0], "").find(r.text)
            if start >= 0:
                add(AnswerCandidate(r.text, _span_kind(_WORD.findall(r.text) or [r.text]), [r.cites[0]], r.cites[0], start))
    return out


def reader_scores(proposed: list | None) -> dict[str, tuple[float, int]]:
    """The reader's (probability, rank) of each answer it proposed, by lowercased text."""
    import math

    out: dict[str, tuple[float, int]] = {}
    for rank, r in enumerate(proposed or []):
        out.setdefault(r.text.lower(), (math.exp(r.score), rank))
    return out


def _clauses(text: str, toks: list[tuple[str, int, int]]) -> list[tuple[int, int]]:
    """Token ranges of a sentence's pieces between punctuation, of 2 to MAX_CLAUSE_WORDS words, and
    of each condition ("if the expression is false") to the piece's end; a piece that opens with
    "Return(s)" also offers what follows it ("a list of the words in the string")."""
    cuts = [0] + [m.end() for m in _CLAUSE_CUT.finditer(text)] + [len(text)]
    out = []
    for lo, hi in zip(cuts, cuts[1:]):
        ids = [k for k, t in enumerate(toks) if t[1] >= lo and t[2] <= hi]
        if not ids:
            continue
        i, j = ids[0], ids[-1] + 1
        starts = [i] + [k for k in range(i + 1, j) if _CONDITION.fullmatch(toks[k][0])]
        if toks[i][0].lower() in ("return", "returns") and j - i > 2:
            starts.append(i + 1)
        for a in starts:
            if 2 <= j - a <= MAX_CLAUSE_WORDS and toks[j - 1][0].lower() not in _STOP:
                out.append((a, j))
    return out


def span_features(question: str, quotes: list[dict], cands: list[AnswerCandidate], embed,
                  proposed: list | None = None) -> np.ndarray:
    """[len(cands), N_SPAN_FEATURES]. embed(texts) -> unit vectors (the policy's cached encoder);
    `proposed`: the reader's candidates, whose probability and rank become two features (0 for
    an answer the reader did not propose)."""
    scores = reader_scores(proposed)
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
        f[o + 3] = min(len(words), MAX_CLAUSE_WORDS) / MAX_CLAUSE_WORDS
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
        if c.text.lower() in scores:
            p, rank = scores[c.text.lower()]
            f[o + 12], f[o + 13] = p, 1 / (1 + rank)
        f[o + N_SPAN_SCALARS:] = qv * cv[j]
    return out


MAX_SENTENCE_CHARS = 300
_LIKE_MARKER = re.compile(r"\[(\d+)\]")
_SENTENCE_CUT = re.compile(r"(?<=[.!?])\s+(?=[\"'(`A-Z0-9_])|\n\s*\n")


def sentence_of(c: AnswerCandidate, quotes: list[dict]) -> str:
    """The sentence of its quote that holds a span, verbatim: a documentation reader wants the
    statement ("Return a list of the words in the string, using sep as the delimiter string."),
    not the fragment the answer head picked. A sentence over MAX_SENTENCE_CHARS is cut to the
    piece between punctuation that holds the span. Answers that are not spans stay as they are."""
    text = next((q["text"] for q in quotes if q["n"] == c.quote), None)
    if text is None or c.start < 0:
        return c.text
    end = c.start + len(c.text)
    cuts = list(_SENTENCE_CUT.finditer(text))
    lo = max([0] + [m.end() for m in cuts if m.end() <= c.start])
    hi = min([len(text)] + [m.start() for m in cuts if m.start() >= end])
    if hi - lo > MAX_SENTENCE_CHARS:
        lo = max([lo] + [m.end() for m in _CLAUSE_CUT.finditer(text, lo, c.start) if m.end() <= c.start])
        hi = min([hi] + [m.start() for m in _CLAUSE_CUT.finditer(text, end, hi)])
    return text[lo:hi].strip() or c.text


def format_answer(c: AnswerCandidate, form: str = "span", quotes: list[dict] | None = None) -> str:
    """The answer text with its citations, e.g. "Arthur's Magazine [1][2]"; form "sentence"
    answers with the span's whole sentence (sentence_of)."""
    text = sentence_of(c, quotes or []) if form == "sentence" else c.text
    # Quoted text can hold what reads as a citation ("errno.errorcode[2]"): the browser would take it
    # for a marker of quote 2. A space inside the brackets keeps it readable and not a marker.
    text = _LIKE_MARKER.sub(r"[ \1]", text)
    return text + " " + "".join(f"[{n}]" for n in c.cites) if c.cites else text
