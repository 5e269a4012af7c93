"""Training questions generated from the pydocs corpus's own sentences, each with a short
extractive answer and the gold sentence that states it (HotpotQA-style supporting facts).

The documentation is read entry by entry: a module page's entries are the functions, classes
and methods its `meta["anchors"]` locate; a topic page's entries are its `str.split(...)`-style
method headers. Templates (one question per matching sentence):

    which          an entry's first sentence "Make X." Which <module> function|class / <owner> method makes X?
                   (gold: the entry's header line and that sentence)    the name, or the qualified name
    returns        "Return(s) X."                      What does <qualname> return?            head of X
    returns_true   "Return(s) True if C."              When does <qualname> return True?       C
    raises         "Raise(s) E if|when C."             What exception does <qualname> raise if C?   E
                   "If C, E is raised." / "E is raised if C."  (in an entry)
    default        signature "f(a, b=3)"               What is the default value of the b parameter of f?   3
    keyword_only   signature "f(a, *, b=3)"            Is the b parameter of f keyword-only?   yes / no
    base_class     "(A) subclass of B." in a class     What is the base class of <qualname>?   B
    topic_raises   "If C, E is raised." on a topic page   In the Python documentation on <title>,
                                                       what exception is raised if C?          E

Every answer occurs verbatim (ignoring case) in its gold sentence, or is "yes"/"no". The gold
sentence's offsets index the document text; `text` is that span whitespace-normalised.
Generation is deterministic for a corpus and a seed; questions are deduplicated by their text.
"""
from __future__ import annotations

import hashlib
import random
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

from citeenv.documents import Document, normalize_ws

TEMPLATES = ("which", "returns", "returns_true", "raises", "default", "keyword_only", "base_class", "topic_raises")
SOURCE = "pydocs-gen"


@dataclass
class GenerateConfig:
    templates: str = ",".join(TEMPLATES)  # the templates to use, comma-separated
    seed: int = 0
    limit: int | None = None  # keep at most this many questions (a seeded sample)
    defaults_per_entry: int = 2  # default-value questions per signature: None defaults would swamp the set
    same_sentence: int = 3  # questions of one template from one sentence text (inherited docstrings repeat)
    max_answer_words: int = 6
    max_condition_words: int = 12
    max_sentence_chars: int = 400


@dataclass(frozen=True)
class Entry:
    """One documented object in a document: its header line and its body, as offsets."""

    qualname: str
    kind: str  # "class", "property" or "routine"
    head_start: int
    head_end: int
    body_end: int


@dataclass
class Candidate:
    template: str
    question: str
    answers: list[str]
    spans: list[tuple[int, int]]  # the gold sentences, in reading order
    # What counts as "the same sentence" for GenerateConfig.same_sentence; default: the gold text.
    # Signatures use their parameter list, so Enum's boilerplate (value, names=None, *, ...) on
    # every enum class does not become hundreds of questions.
    repeat_key: str = ""


@dataclass
class GenerationStats:
    per_template: Counter = field(default_factory=Counter)
    duplicates: int = 0
    repeated_sentence: int = 0
    ambiguous: int = 0  # questions asked with different answers by different entries; all dropped


# --- entries and sentences ---------------------------------------------------------------------

def module_entries(doc: Document) -> list[Entry]:
    """Entries of a module page, from the offsets the pydocs source records in meta["anchors"]."""
    anchors = sorted((pos, qual) for qual, pos in (doc.meta.get("anchors") or {}).items())
    entries = []
    for i, (pos, qual) in enumerate(anchors):
        end = anchors[i + 1][0] - 2 if i + 1 < len(anchors) else len(doc.text)  # entries are joined by "\n\n"
        head_end = doc.text.find("\n", pos, end)
        head_end = end if head_end < 0 else head_end
        head = doc.text[pos:head_end]
        kind = "class" if head.startswith("class ") else "property" if head.startswith("property ") else "routine"
        entries.append(Entry(qual, kind, pos, head_end, end))
    return entries


# A topic page's method header on a line of its own: "str.center(width[, fillchar])".
_TOPIC_HEAD = re.compile(r"^( *)(?:classmethod |staticmethod )?([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+)\(.*\)[ \t]*$", re.M)


def topic_entries(doc: Document) -> list[Entry]:
    """Method entries of a topic page: a dotted header line, then a more deeply indented body."""
    text = doc.text
    entries = []
    for m in _TOPIC_HEAD.finditer(text):
        indent = len(m.group(1))
        body_end = len(text)
        # The body runs until a non-blank line indented no deeper than the header.
        for line in re.finditer(r"^([ \t]*)\S.*$", text[m.end():], re.M):
            if len(line.group(1)) <= indent:
                body_end = m.end() + line.start()
                break
        if text[m.end():body_end].strip():
            entries.append(Entry(m.group(2), "routine", m.start() + indent, m.end(), body_end))
    return entries


_ABBREV = re.compile(r"(?:\b(?:e\.g|i\.e|etc|vs|cf|approx|Mr|Dr|No)|\.\.)\.$", re.I)
# A sentence ends at . ! or ? before a capital, a quote or markup, or a call ("get_annotations() returns").
_BOUNDARY = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[A-Z\"'(*`:\[]|[a-z_][\w.]*\()")


def sentence_spans(text: str, start: int, end: int, indented: bool = False) -> list[tuple[int, int]]:
    """Prose sentences of text[start:end] as (start, end) offsets into text. Code is skipped:
    paragraphs indented deeper than the block's first line (literal blocks, doctests; kept with
    indented=True, for the rendered topic pages whose lists are indented), paragraphs after one
    ending in '::', and lines that start a shell or doctest prompt."""
    spans = []
    base = None
    after_literal = False
    for para in re.finditer(r"\S(?:.|\n(?![ \t]*\n))*", text[start:end]):
        p0, p1 = start + para.start(), start + para.end()
        line_start = text.rfind("\n", 0, p0) + 1
        indent = p0 - line_start
        base = indent if base is None else base
        literal, after_literal = after_literal, para.group().rstrip().endswith("::")
        first = para.group().lstrip()
        if literal or (indent > base and not indented) or first.startswith((">>>", "$ ", "...", "..")):
            continue
        s0 = p0
        for b in _BOUNDARY.finditer(text, p0, p1):
            piece = text[s0:b.start()].rstrip()
            if not _ABBREV.search(piece):
                spans.append((s0, s0 + len(piece)))
                s0 = b.end()
        spans.append((s0, p1))
    return [(a, b) for a, b in spans if text[a:b].strip()]


# --- answer spans ----------------------------------------------------------------------------

_MARKUP = re.compile(r"[`*]|:\w+:")
_WRAPPED = re.compile(r"^(``|`|\*\*|\*|\"|')([^`*\"']+)\1$")  # one literal: ``True``, *path*, "None"
# Words a short answer stops before: they begin a clause, a condition or a trailing phrase.
_STOP_BEFORE = set("""that which who whom whose if when where while unless until because since whether
    with without for from to in on into by as at after before using via containing corresponding
    representing given or and but than so such then else otherwise except including e.g. i.e.
    is are was were be will can may""".split())
_TRIM = set("""a an the of and or to in on for with by as at its their this that
    equal ready appropriate suitable unique individual similar""".split())  # and words ending in "ed"
_PRONOUN_START = set("it this that these those they them there so".split())


def unwrap(span: str) -> str | None:
    """A span without reStructuredText markup, or None where the markup is inside it. A span that
    is one wrapped literal (``True``, *path*) loses its wrapping: the inner text is still verbatim."""
    m = _WRAPPED.match(span)
    if m:
        span = m.group(2)
    return None if _MARKUP.search(span) else span


def head_phrase(text: str, max_words: int) -> str | None:
    """The head noun phrase at the start of `text`, verbatim: cut before the first clause or
    preposition word (one "of" is kept: "the number of items"; one "and" after a lone first word:
    "numeric and monetary parameters"), at punctuation, and at max_words. None where the phrase is
    a conditional value ("b'' if already at EOF") or would be cut inside a quotation or a phrase."""
    matches = list(re.finditer(r"\S+", text))
    words = [m.group() for m in matches]
    lows = [w.lower().strip("\"'`*(),;:.") for w in words]
    kept, of_at, full = 0, None, False
    for i, low in enumerate(lows):
        coordinated = low in ("and", "or") and i == 1 and lows[0] not in ("a", "an", "the")
        if i > 0 and ((low in _STOP_BEFORE and not coordinated) or words[i].startswith("(")
                      or (low == "of" and of_at is not None)):
            break
        if low == "of":
            of_at = i
        kept = i + 1
        if words[i].endswith((",", ";", ":", ")", ".")):
            break
        if kept == max_words:
            full = kept < len(words) and lows[kept] not in _STOP_BEFORE and not words[kept].startswith("(")
            break
    if kept < len(words) and lows[kept] in ("if", "when", "unless"):
        return None  # the value of one case, not what the function returns
    if full:  # max_words cut a phrase short: keep the part before its "of", if any
        if of_at is None:
            return None
        kept = of_at
    # Trailing function words and participles ("a copy of the string converted [to uppercase]").
    while kept > 1 and (lows[kept - 1] in _TRIM or _participle(lows[kept - 1])):
        kept -= 1
    if not kept:
        return None
    span = text[: matches[kept - 1].end()].rstrip(",;:.")
    if span.count("(") != span.count(")"):
        span = span.rstrip(")")
    for q in "'\"":
        opened = sum(w.startswith(q) for w in span.split())
        if opened and not any(w.rstrip(",;:.").endswith(q) for w in span.split()):
            return None  # cut inside a quotation: "the digit-wise 'exclusive"
    return unwrap(span.strip())


def _participle(word: str) -> bool:
    """"converted", "assigned"; not "seed" or "speed"."""
    return len(word) >= 4 and word.endswith("ed") and not word.endswith("eed")


def condition_phrase(text: str, max_words: int) -> str | None:
    """A condition clause, verbatim, cut where the clause ends (a comma or semicolon, "otherwise",
    "else", "and False"); None if it is long, marked up, cut inside a list ("if it is one of
    character device, block device or FIFO"), or only a pronoun's ("if it does") reference to an
    earlier sentence."""
    text = re.sub(r"\s*\([^()]*\)", "", text)  # "if value has (or contains ...) an unsupported type"
    text = re.sub(r"^and only if\s+", "", text)  # "true if and only if C"
    cut = re.search(r"[,;:(]|\s+(?:otherwise|else)\b|\s+and\s+(?:``)?(?:False|false)\b", text)
    cond = (text[: cut.start()] if cut else text).strip().rstrip(".")
    if cut and re.fullmatch(r",\s*[^,;:.]*\b(?:or|and)\b[^,;:.]*\.?", text[cut.start():].rstrip()):
        return None
    words = cond.split()
    if not words or len(words) > max_words:
        return None
    if words[0].lower() in _PRONOUN_START and len(words) <= 3:
        return None
    return cond


def plain(text: str) -> str:
    """Question text: markup dropped (``x`` -> x, *x* -> x, :exc:`X` -> X), whitespace normalised."""
    text = re.sub(r":\w+:`([^`]*)`", r"\1", text)
    text = re.sub(r"``([^`]*)``|`([^`]*)`", lambda m: m.group(1) or m.group(2) or "", text)
    text = re.sub(r"\*\*?([^*]+)\*\*?", r"\1", text)
    return normalize_ws(text)


# --- templates ----------------------------------------------------------------------------------

_EXC_NAME = r"(?:[A-Za-z_]\w*\.)*[A-Z]\w*"
_EXC = re.compile(r"(?::\w+:)?[`\"']*(" + _EXC_NAME + r")[`\"']*(\s+(?:exception|error))?")
_EXC_SUFFIX = ("Error", "Exception", "Warning", "Exit", "Interrupt", "Iteration", "Timeout", "Expired")
_CONNECTIVE = r"(?P<conn>if|when|whenever|unless|upon|in case|on)"
_EXC_PHRASE = r"(?P<exc>\S+?(?:\s+(?:exception|error))?)"  # "ValueError", "a KeyError exception"
# "Raise(s) [a|an] E [exception] if C"
_RAISE_VERB = re.compile(r"^Raises?\s+(?:an?\s+)?" + _EXC_PHRASE + r"\s+" + _CONNECTIVE + r"\s+(?P<cond>.+)$", re.S)
# "If C, [then] [a|an|the] E [exception] is raised."
_IF_RAISED = re.compile(r"^(?P<conn>If|When)\s+(?P<cond>[^,]+),\s+(?:then\s+)?(?:an?\s+|the\s+)?" + _EXC_PHRASE
                        + r"\s+(?:is|will be)\s+raised\.?$", re.S)
# "If C, raise(s) E."
_IF_RAISE = re.compile(r"^(?P<conn>If|When)\s+(?P<cond>[^,]+),\s+(?:it\s+)?raises?\s+(?:an?\s+)?" + _EXC_PHRASE
                       + r"\.?$", re.S)
# "[A|An] E [exception] is raised if C."
_RAISED_IF = re.compile(r"^(?:An?\s+)?" + _EXC_PHRASE + r"\s+(?:is|will be)\s+raised\s+" + _CONNECTIVE
                        + r"\s+(?P<cond>.+)$", re.S)
# "[A] subclass of B", "This is a subclass derived from B", "<Name> is a subclass of [the class] B"
_SUBCLASS = re.compile(r"^(?:(?:This|It|(?:The\s+class\s+)?(?P<name>[A-Za-z_]\w*))\s+is\s+)?(?:[Aa]n?\s+)?[Ss]ubclass\s+"
                       r"(?:of|derived\s+from)\s+(?:the\s+class\s+)?(?P<base>\S+?)[.,;]?(?:\s|$)")
_RETURNS = re.compile(r"^Returns?\s+(?P<rest>.+)$", re.S)
_TRUE_IF = re.compile(r"^(?P<true>``True``|True|\"True\"|true)\s+(?:if|when)\s+(?P<cond>.+)$", re.S)
_NOT_A_VALUE = re.compile(r"^(?:``?)?(?:True|False|true|false|whether|None|nonzero|non-zero|zero|it\b|values?\b|"
                          r"a\s+true|a\s+false)")


def exception_name(text: str) -> str | None:
    """The exception a phrase names ("``ValueError``", "a KeyError exception"), or None."""
    m = _EXC.fullmatch(text.strip())
    if not m:
        return None
    name = m.group(1)
    if m.group(2) or name.rsplit(".", 1)[-1].endswith(_EXC_SUFFIX):
        return name
    return None


def _raise_parts(sentence: str) -> tuple[str, str, str] | None:
    """(exception, connective, condition) of a sentence stating when an exception is raised."""
    for pattern in (_RAISE_VERB, _IF_RAISED, _IF_RAISE, _RAISED_IF):
        m = pattern.match(sentence)
        if m:
            exc = exception_name(m.group("exc"))
            if exc:
                return exc, m.group("conn").lower(), m.group("cond")
    return None


def entry_candidates(doc: Document, entry: Entry, config: GenerateConfig, rng: random.Random) -> Iterator[Candidate]:
    text = doc.text
    q = entry.qualname
    yield from signature_candidates(text, entry, config, rng)
    returned = False
    for n, (s0, s1) in enumerate(sentence_spans(text, entry.head_end, entry.body_end)):
        sentence = normalize_ws(text[s0:s1])
        if len(sentence) > config.max_sentence_chars:
            continue
        if n == 0:
            which = which_question(doc, entry, sentence, config)
            if which:
                name = q.rsplit(".", 1)[-1]
                yield Candidate("which", which, [name, q], [(entry.head_start, entry.head_end), (s0, s1)])
        m = _RETURNS.match(sentence)
        if m and not returned:  # a later "Return ..." is usually a special case of the first
            returned = True
            rest = m.group("rest").rstrip(".")
            t = _TRUE_IF.match(rest)
            if t:
                cond = condition_phrase(t.group("cond"), config.max_condition_words)
                cond = cond and unwrap(cond)
                if cond:
                    yield Candidate("returns_true", f"When does {q} return True?", [cond], [(s0, s1)])
            elif not _NOT_A_VALUE.match(rest):
                head = head_phrase(rest, config.max_answer_words)
                if head and _is_phrase(head):
                    yield Candidate("returns", f"What does {q} return?", [head], [(s0, s1)])
        parts = _raise_parts(sentence)
        if parts:
            exc, conn, cond = parts
            cond = condition_phrase(cond, config.max_condition_words)
            if cond:
                yield Candidate("raises", f"What exception does {q} raise {conn} {plain(cond)}?", [exc], [(s0, s1)])
        if entry.kind == "class":
            base = base_class(sentence, q)
            if base:
                yield Candidate("base_class", f"What is the base class of {q}?", [base], [(s0, s1)])


# Imperative verbs that open a docstring's summary ("Return ...", "Make an iterator ...").
_VERBS = set("""return set get create read remove add send test parse convert write close process open decode
    handle run encode wait log register execute print change find compare make call delete format check retrieve
    generate start stop perform receive extract emit split copy compute put clear connect reset report determine
    guess append insert load mark update configure release push construct invoke compile strip partition
    normalize rename represent store schedule acquire round replace decompress compress iterate turn resolve
    truncate expand choose count join sort build apply quote unquote escape unescape search match flush pack
    unpack fetch install evaluate calculate display show save lock unlock translate validate pad dump serialize
    wrap unwrap filter merge move walk scan sleep spawn kill terminate shuffle encrypt decrypt hash sign verify
    initialize prepare lower upper center reverse collect seek tell""".split())


def third_person(verb: str) -> str:
    """make -> makes, copy -> copies, push -> pushes: the verb of "Which function makes ...?"."""
    if verb.endswith(("s", "sh", "ch", "x", "z")):
        return verb + "es"
    if verb.endswith("y") and verb[-2:-1] not in "aeiou":
        return verb[:-1] + "ies"
    return verb + "s"


def which_question(doc: Document, entry: Entry, sentence: str, config: GenerateConfig) -> str | None:
    """"Which json function serializes obj to a JSON formatted str?" from an entry whose summary
    sentence opens with an imperative ("Serialize obj ...") or third-person ("Returns ...") verb."""
    verb, _, rest = sentence.partition(" ")
    low = verb.lower()
    if low in _VERBS:
        verb = third_person(low)
    elif low.endswith("s") and (low[:-1] in _VERBS or low[:-2] in _VERBS or low[:-3] + "y" in _VERBS):
        verb = low
    else:
        return None
    description = plain(rest)
    colon = re.search(r":(?:\s|$)", description)
    if colon:  # a field list follows: "... extension) Arguments: - start: ..."
        description = description[: colon.start()]
        description = re.sub(r"\s+(?:Arguments|Parameters|Returns|Example|Examples|Usage|Args)$", "", description)
    description = description.rstrip(".;")
    if len(description.split()) > 25:
        description = re.split(r"[,;]| - ", description, maxsplit=1)[0]
    if not 2 <= len(description.split()) <= 25 or not re.search(r"[A-Za-z]", description):
        return None
    # "Remove key and return its value" -> "removes key and returns its value"
    description = re.sub(r"\b(and|or) ([a-z]+)\b",
                         lambda m: f"{m.group(1)} {third_person(m.group(2)) if m.group(2) in _VERBS else m.group(2)}",
                         description)
    owner, name = entry.qualname.rsplit(".", 1)
    if entry.kind == "property":
        return None
    if name.startswith("__"):
        return f"Which special method {verb} {description}?"
    if owner == doc.meta.get("module"):
        kind = "class" if entry.kind == "class" else "function"
        return f"Which {owner} {kind} {verb} {description}?"
    return f"Which {owner} method {verb} {description}?"


def base_class(sentence: str, qualname: str) -> str | None:
    """The base class a class's sentence states, if it speaks of that class (not of another name)."""
    m = _SUBCLASS.match(sentence)
    if not m or (m.group("name") and m.group("name") != qualname.rsplit(".", 1)[-1]):
        return None
    base = unwrap(m.group("base").strip("\"'`").rstrip(".,;"))
    if not base or not re.fullmatch(r"[A-Za-z_][\w.]*", base) or base.rsplit(".", 1)[-1] == qualname.rsplit(".", 1)[-1]:
        return None
    return base


def _is_phrase(head: str) -> bool:
    """A returned thing, not a verb or adverb the docstring put after "Return" ("centered in ...")."""
    words = head.split()
    first = words[0].lower()
    if first in ("a", "an", "the"):
        return len(words) > 1
    return first not in _STOP_BEFORE and first not in _PRONOUN_START and not _participle(first) \
        and not first.endswith(("ly", "ing"))


def signature_parameters(header: str) -> list[tuple[str, str | None, str]] | None:
    """(name, default text or None, kind) of each parameter in a header's outer parentheses;
    kind is "positional" (before `/`), "keyword_only" (after `*` or `*args`), "var" or "normal".
    None if the header has no balanced parameter list."""
    open_at = header.find("(")
    if open_at < 0:
        return None
    depth, quote, pieces, cur = 0, None, [], []
    for i in range(open_at, len(header)):
        ch = header[i]
        if quote:
            cur.append(ch)
            if ch == quote and header[i - 1] != "\\":
                quote = None
            continue
        if ch in "\"'":
            quote = ch
        elif ch in "([{":
            depth += 1
            if depth == 1:
                continue
        elif ch in ")]}":
            depth -= 1
            if depth == 0:
                pieces.append("".join(cur))
                break
        elif ch == "," and depth == 1:
            pieces.append("".join(cur))
            cur = []
            continue
        cur.append(ch)
    else:
        return None
    params, kw_only = [], False
    for piece in pieces:
        piece = piece.strip()
        if not piece:
            continue
        if piece == "/":
            params = [(n, d, "positional") for n, d, _k in params]
            continue
        if piece == "*" or (piece.startswith("*") and not piece.startswith("**")):
            kw_only = True
            if piece != "*":
                params.append((piece.lstrip("*"), None, "var"))
            continue
        if piece.startswith("**"):
            params.append((piece.lstrip("*"), None, "var"))
            continue
        name, eq, default = piece.partition("=")
        name = name.split(":", 1)[0].strip()
        if not re.fullmatch(r"[A-Za-z_]\w*", name):
            return None  # optional-argument brackets and other notation: not a Python signature
        params.append((name, default.strip() if eq else None, "keyword_only" if kw_only else "normal"))
    return params


def signature_candidates(text: str, entry: Entry, config: GenerateConfig, rng: random.Random) -> Iterator[Candidate]:
    header = text[entry.head_start:entry.head_end]
    if entry.kind == "property" or "(" not in header:
        return
    q = entry.qualname
    parameter_list = header[header.find(q) + len(q):]
    params = signature_parameters(parameter_list)
    if not params:
        return
    span = (entry.head_start, entry.head_end)
    public = [p for p in params if not p[0].startswith("_") and p[0] not in ("self", "cls")]
    with_default = [(n, d) for n, d, _k in public if d is not None and _plain_default(d)]
    for name, default in rng.sample(with_default, min(config.defaults_per_entry, len(with_default))):
        yield Candidate("default", f"What is the default value of the {name} parameter of {q}?", [default], [span],
                        f"{name} {parameter_list}")
    keyword = [n for n, _d, k in public if k == "keyword_only"]
    other = [n for n, _d, k in public if k in ("normal", "positional")]
    if keyword and other:  # one of each: the answers balance
        for name, answer in ((rng.choice(keyword), "yes"), (rng.choice(other), "no")):
            yield Candidate("keyword_only", f"Is the {name} parameter of {q} keyword-only?", [answer], [span],
                            f"{name} {parameter_list}")


def _plain_default(default: str) -> bool:
    """A default worth asking about: a short literal or name, not a placeholder for an unprintable value."""
    return 0 < len(default) <= 30 and default != "..." and "<" not in default and "\n" not in default


def topic_candidates(doc: Document, entries: list[Entry], config: GenerateConfig) -> Iterator[Candidate]:
    """Topic pages: only "If C, E is raised" and "E is raised if C", asked of the page's subject.
    Sentences in method entries are left to entry_candidates, which knows their subject."""
    title = doc.title.replace('"', "").strip()
    for s0, s1 in sentence_spans(doc.text, 0, len(doc.text), indented=True):
        if any(e.head_start <= s0 < e.body_end for e in entries):
            continue
        sentence = normalize_ws(doc.text[s0:s1])
        if len(sentence) > config.max_sentence_chars:
            continue
        m = _IF_RAISED.match(sentence) or _RAISED_IF.match(sentence)
        if not m:
            continue
        exc = exception_name(m.group("exc"))
        cond = condition_phrase(m.group("cond"), config.max_condition_words)
        if exc and cond:
            question = (f"In the Python documentation on {plain(title)}, what exception is raised "
                        f"{m.group('conn').lower()} {plain(cond)}?")
            yield Candidate("topic_raises", question, [exc], [(s0, s1)])


# --- generation --------------------------------------------------------------------------------

def document_candidates(doc: Document, config: GenerateConfig, rng: random.Random) -> Iterator[Candidate]:
    kind = doc.meta.get("kind")
    if kind == "module":
        for entry in module_entries(doc):
            yield from entry_candidates(doc, entry, config, rng)
    elif kind == "topic":
        entries = topic_entries(doc)
        for entry in entries:
            yield from entry_candidates(doc, entry, config, rng)
        yield from topic_candidates(doc, entries, config)


def question_id(question: str) -> str:
    return "pydocs-gen-" + hashlib.sha1(question.encode("utf-8")).hexdigest()[:12]


def make_record(doc: Document, cand: Candidate) -> dict:
    return {
        "id": question_id(cand.question),
        "question": cand.question,
        "answers": cand.answers,
        "support": [{"doc_id": doc.id, "title": doc.title, "url": doc.url, "text": normalize_ws(doc.text[start:end]),
                     "start": start, "end": end} for start, end in cand.spans],
        "template": cand.template,
        "source": SOURCE,
    }


def answer_in_support(record: dict) -> bool:
    """The invariant every generated record keeps: an answer inside its gold sentence, or yes/no."""
    text = " ".join(s["text"] for s in record["support"]).lower()
    return any(a.lower() in ("yes", "no") or normalize_ws(a).lower() in text for a in record["answers"])


def template_names(spec: str) -> set[str]:
    """"which,raises" -> {"which", "raises"}; an unknown name fails, listing the known ones."""
    names = {t.strip() for t in spec.split(",") if t.strip()}
    unknown = sorted(names - set(TEMPLATES))
    if unknown or not names:
        raise ValueError(f"Unknown template(s) {', '.join(unknown) or '(none given)'}; the templates are: "
                         f"{', '.join(TEMPLATES)}.")
    return names


def generate_questions(documents, config: GenerateConfig | None = None,
                       stats: GenerationStats | None = None) -> list[dict]:
    """Question records from pydocs documents, deduplicated by question text, in a seeded order."""
    from citeagent.eval.datasets import question_key

    config = config or GenerateConfig()
    stats = stats if stats is not None else GenerationStats()
    wanted = template_names(config.templates)
    rng = random.Random(config.seed)
    records, answers_of, per_sentence, ambiguous = [], {}, Counter(), set()
    for doc in documents:
        for cand in document_candidates(doc, config, rng):
            if cand.template not in wanted:
                continue
            record = make_record(doc, cand)
            if not answer_in_support(record):
                continue  # a template bug; never emit a record whose answer its sentence lacks
            key = question_key(cand.question)
            if key in answers_of:
                stats.duplicates += 1
                if answers_of[key] != cand.answers:
                    ambiguous.add(key)  # one question, two answers (two functions described alike)
                continue
            sentence_key = (cand.template, cand.repeat_key or tuple(s["text"] for s in record["support"]))
            if per_sentence[sentence_key] >= config.same_sentence:
                stats.repeated_sentence += 1
                continue
            answers_of[key] = cand.answers
            per_sentence[sentence_key] += 1
            records.append(record)
    stats.ambiguous = len(ambiguous)
    records = [r for r in records if question_key(r["question"]) not in ambiguous]
    rng.shuffle(records)
    if config.limit is not None:
        records = records[: config.limit]
    stats.per_template = Counter(r["template"] for r in records)
    return records


# --- citeagent train pydocs-questions ------------------------------------------------------------


@dataclass
class PydocsQuestionsConfig(GenerateConfig):
    """`citeagent train pydocs-questions`: the generator's settings plus where to read and write."""

    out: str = field(default="", metadata={"help": "JSONL file to write (replaced)"})
    corpus: str = field(default="pydocs", metadata={"help": "the pydocs corpus spec or an index directory"})
    modules: str | None = field(default=None, metadata={
        "help": "comma-separated module pages only (e.g. json,shutil), no topics; for quick runs"})
    eval: str = field(default="", metadata={
        "help": "evaluation questions the output must not leak (default: the pydocs QA set, corpora/pydocs_qa.jsonl)"})
    jaccard: float = field(default=0.6, metadata={
        "help": "drop questions whose content-word Jaccard with an evaluation question is at least this"})

    def __post_init__(self):
        if not self.out:
            raise ValueError("--out is required: the JSONL file to write, e.g. --out runs/pydocs_questions.jsonl")


def run_pydocs_questions(config: PydocsQuestionsConfig) -> int:
    import argparse
    from dataclasses import asdict

    from citeagent.eval.datasets import PYDOCS_QA

    args = asdict(config) | {"eval_file": config.eval or str(PYDOCS_QA)}
    return cmd_train_pydocs_questions(argparse.Namespace(**args))


def cmd_train_pydocs_questions(args) -> int:
    from dataclasses import fields
    from pathlib import Path

    from citeagent.data.gold_questions import write_gold_questions
    from citeagent.data.leakage import LeakageReport, drop_leaking
    from citeagent.eval.datasets import load_jsonl_dataset
    from citeenv.sources import load_corpus

    config = GenerateConfig(**{f.name: getattr(args, f.name) for f in fields(GenerateConfig)})
    template_names(config.templates)
    for name in ("defaults_per_entry", "same_sentence", "max_answer_words", "max_condition_words",
                 "max_sentence_chars"):
        if getattr(config, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1 (got {getattr(config, name)}).")
    if config.limit is not None and config.limit < 1:
        raise ValueError(f"--limit must be at least 1 (got {config.limit}); leave it out to keep every question.")
    if not 0 < args.jaccard <= 1:
        raise ValueError(f"--jaccard is a fraction in (0, 1] (got {args.jaccard}).")
    if Path(args.out).is_dir():
        raise ValueError(f"--out {args.out} is a directory; name a .jsonl file to write.")
    evaluation = load_jsonl_dataset(args.eval_file).examples  # before the corpus build: a bad path fails fast
    opts = {}
    if args.modules is not None:
        modules = [m.strip() for m in args.modules.split(",") if m.strip()]
        if not modules:
            raise ValueError("--modules is empty; name module pages, e.g. --modules json,shutil")
        if args.corpus != "pydocs":
            raise ValueError(f"--modules builds the pydocs corpus afresh; it cannot select pages of {args.corpus!r}. "
                             "Leave out --corpus or --modules.")
        opts = {"modules": modules, "include_topics": False}
    corpus = load_corpus(args.corpus, **opts)
    stats = GenerationStats()
    # The leakage guard runs before --limit, so a limited run still gets its full number of questions.
    records = generate_questions(corpus.documents, replace(config, limit=None), stats)
    if not records:
        raise ValueError(f"No questions could be made from the corpus {corpus.name!r}: the templates read pydocs "
                         "pages (module entries and topics). Use --corpus pydocs or a pydocs index directory.")
    leakage = LeakageReport()
    records = drop_leaking(records, evaluation, jaccard=args.jaccard, report=leakage)
    if config.limit is not None:
        records = records[: config.limit]
    n = write_gold_questions(records, args.out)
    print(f"{n} questions from {len(corpus)} documents of {corpus.name!r} written to {args.out}")
    for template, count in Counter(r["template"] for r in records).most_common():
        print(f"  {template:<14} {count}")
    print(f"left out: {stats.duplicates} duplicate questions, {stats.ambiguous} questions with two different "
          f"answers, {stats.repeated_sentence} repeats of one sentence")
    print(leakage.summary())
    return 0
