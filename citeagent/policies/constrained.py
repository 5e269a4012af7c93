"""Grammar-constrained decoding (GopherCite's constrained sampling): every command the LM writes parses.

The grammar runs on bytes, so it is independent of how a tokenizer splits text: a token is allowed
when each of its bytes is a legal next byte. Three pieces:

- TokenIndex: the vocabulary as byte strings, a byte trie over them, and per-token tables for the
  free-text fast path. Built once per tokenizer.
- CommandGrammar: the byte automaton for one row, built from the env's `info` (docs/ENV_SPEC.md):
  command keywords restricted to `valid_commands`, link ids, `Scrolled down 1|2|3`, one-line
  free text (Search, Find in page), `Quote:` text that must stay a verbatim substring of
  `quotable_text`, and in the answering phase free text whose `[n]` markers must name existing
  quotes. A command ends with a newline or EOS, allowed only where the command is complete.
- generate(): a batched decoding loop with a KV cache that masks the logits of each row to the
  tokens its grammar allows, and returns the text, the token ids and their log-probs.

The allowed set of a state is found by walking the trie with the automaton, which only visits
tokens that are live prefixes (a few for a keyword, the substrings at the current quote
positions). Free-text states would visit the whole vocabulary, so they use a precomputed mask of
the tokens without special bytes and check only the few hundred tokens that have them. Allowed
sets are cached per state (a quote's position sets excepted: they are specific to one window and
cheap to walk), so after warm-up most steps are a dict lookup.

Quotes are contiguous text (`Quote: <text>`), starting at a word start. The `<start>━<end>` span
form is not generated: a small LM copies a contiguous span more reliably than it picks two anchors.
"""
from __future__ import annotations

import json
import re
import weakref
from dataclasses import dataclass, field
from typing import NamedTuple

import torch

from citeenv import command_spec
from citeenv.documents import normalize_ws

# --- the command language (docs/ENV_SPEC.md) ----------------------------------------------------

# keyword -> (literal the command starts with, argument kind), from the env's one command spec
COMMANDS = {c.keyword: (c.literal, c.arg) for c in command_spec.COMMANDS}
QUOTE_SEP = command_spec.QUOTE_SEP.encode()  # would turn a quote into the <start>━<end> form, so never copy it
SCROLLS = tuple(a.encode() for a in command_spec.SCROLL_AMOUNTS)
LINE_LIMIT = command_spec.MAX_QUERY_CHARS  # defaults, for an info without "limits"
QUOTE_LIMIT = command_spec.MAX_QUOTE_CHARS
NL = 0x0A
SPACE = 0x20
WHITESPACE = frozenset(b" \t\r\n")
CONTROL = re.compile(rb"[\x00-\x1f\x7f]")  # never inside a one-line argument


def _utf8_step(pending: int, b: int) -> int:
    """Continuation bytes still expected after byte b, or -1 when b breaks UTF-8.

    Coarse (overlong forms pass), enough to never end a command inside a character."""
    if pending:
        return pending - 1 if 0x80 <= b <= 0xBF else -1
    if b < 0x80:
        return 0
    if 0xC2 <= b <= 0xDF:
        return 1
    if 0xE0 <= b <= 0xEF:
        return 2
    if 0xF0 <= b <= 0xF4:
        return 3
    return -1


# --- the vocabulary as bytes --------------------------------------------------------------------

def _gpt2_byte_decoder() -> dict[str, int]:
    """GPT-2 byte-level BPE spells each byte as one printable char; this maps the char back."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    out, n = {}, 0
    for b in range(256):
        if b in printable:
            out[chr(b)] = b
        else:
            out[chr(256 + n)] = b
            n += 1
    return out


def _decoder_types(node) -> set[str]:
    if isinstance(node, dict):
        return {node.get("type", "")} | {t for v in node.values() for t in _decoder_types(v)}
    if isinstance(node, list):
        return {t for v in node for t in _decoder_types(v)}
    return set()


def vocab_bytes(tokenizer, vocab_size: int | None = None) -> list[bytes | None]:
    """The bytes each token id stands for; None for special tokens and ids the tokenizer lacks."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    vocab = tokenizer.get_vocab()
    if backend is not None:
        kinds = _decoder_types(json.loads(backend.to_str()).get("decoder"))
        byte_level = "ByteLevel" in kinds
    else:
        byte_level = any(t.startswith("Ġ") for t in vocab)
    size = vocab_size or max(vocab.values()) + 1  # the model's logits decide; extra ids are unusable
    special = set(tokenizer.all_special_ids)
    added = {i: t for i, t in getattr(tokenizer, "added_tokens_decoder", {}).items()}
    special |= {i for i, t in added.items() if getattr(t, "special", False)}
    byte_of = _gpt2_byte_decoder()
    out: list[bytes | None] = [None] * size
    for piece, i in vocab.items():
        if i in special or i >= size:
            continue
        if i in added:  # added tokens are stored as plain text, not byte-encoded
            out[i] = str(added[i]).encode()
        elif byte_level:
            try:
                out[i] = bytes(byte_of[c] for c in piece)
            except KeyError:  # not a byte-level piece (e.g. a stray added word)
                out[i] = piece.encode()
        else:  # SentencePiece: "▁" is a space, "<0xNN>" a raw byte
            m = re.fullmatch(r"<0x([0-9A-Fa-f]{2})>", piece)
            out[i] = bytes([int(m.group(1), 16)]) if m else piece.replace("▁", " ").encode()
    return [b if b else None for b in out]


class Allowed:
    """A set of token ids, kept as an index tensor when small and as a bool mask when large."""

    def __init__(self, ids: list[int], size: int):
        t = torch.tensor(sorted(set(ids)), dtype=torch.long)
        self.n = len(t)
        if self.n > size // 16:
            self.mask, self.ids = torch.zeros(size, dtype=torch.bool).index_fill_(0, t, True), None
        else:
            self.mask, self.ids = None, t

    @classmethod
    def from_mask(cls, mask: torch.Tensor) -> "Allowed":
        a = cls.__new__(cls)
        a.mask, a.ids, a.n = mask, None, int(mask.sum())
        return a

    def id_list(self) -> list[int]:
        return (self.mask.nonzero().flatten() if self.mask is not None else self.ids).tolist()

    def union(self, other: "Allowed") -> "Allowed":
        size = len(self.mask) if self.mask is not None else len(other.mask) if other.mask is not None else 0
        if size == 0:
            a = self.__class__.__new__(self.__class__)
            a.ids = torch.unique(torch.cat([self.ids, other.ids]))
            a.mask, a.n = None, len(a.ids)
            return a
        return Allowed.from_mask(self.as_mask(size) | other.as_mask(size))

    def as_mask(self, size: int) -> torch.Tensor:
        if self.mask is not None:
            return self.mask
        return torch.zeros(size, dtype=torch.bool).index_fill_(0, self.ids, True)


class TokenIndex:
    """A tokenizer's vocabulary as bytes, with the byte trie and the free-text tables."""

    CACHE_LIMIT = 4096  # entries; a mask entry is ~50 KB

    def __init__(self, tokenizer, vocab_size: int | None = None, eos_ids: list[int] | None = None):
        self.tokens = vocab_bytes(tokenizer, vocab_size)
        self.size = len(self.tokens)
        eos = eos_ids if eos_ids is not None else [tokenizer.eos_token_id]
        self.eos_ids = [int(e) for e in eos if e is not None]
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_ids[0]
        self.max_len = max(len(t) for t in self.tokens if t)

        # The trie: children[node] maps a byte to a child node; ends[node] lists the tokens spelled
        # by the path to that node.
        self.children: list[dict[int, int]] = [{}]
        self.ends: list[list[int]] = [[]]
        for i, tok in enumerate(self.tokens):
            if tok is None:
                continue
            node = 0
            for b in tok:
                nxt = self.children[node].get(b)
                if nxt is None:
                    nxt = len(self.children)
                    self.children[node][b] = nxt
                    self.children.append({})
                    self.ends.append([])
                node = nxt
            self.ends[node].append(i)

        # Free text: "plain" tokens (no byte the grammar treats specially) are allowed from a
        # free-text state whenever they continue the UTF-8 sequence correctly, so their set is a
        # precomputed mask per (kind, pending continuation bytes); only the rest is checked.
        # after[p][i]: continuation bytes still open after token i from p pending (-1: invalid).
        after = [[-1] * self.size for _ in range(4)]
        line_plain, answer_plain = [False] * self.size, [False] * self.size
        self.special = {"line": [], "answer": []}
        for i, tok in enumerate(self.tokens):
            if tok is None:
                continue
            if tok.isascii():  # most tokens: fine unless a multi-byte character is open
                after[0][i] = 0
            else:
                for p in range(4):
                    after[p][i] = self._utf8_after(p, tok)
            if CONTROL.search(tok) is None:
                line_plain[i] = True
                if b"[" not in tok:
                    answer_plain[i] = True
                else:
                    self.special["answer"].append(i)
            else:
                self.special["line"].append(i)
                self.special["answer"].append(i)
        self.plain = {}
        for kind, plain in (("line", line_plain), ("answer", answer_plain)):
            for p in range(4):
                self.plain[kind, p] = torch.tensor(plain) & (torch.tensor(after[p]) >= 0)
        # Bytes a token takes from a length budget, its unfinished character included.
        lengths = torch.tensor([len(t) if t else 0 for t in self.tokens])
        self.need = [lengths + torch.tensor(after[p]).clamp(min=0) for p in range(4)]
        self.cache: dict = {}

    @staticmethod
    def _utf8_after(pending: int, tok: bytes) -> int:
        for b in tok:
            pending = _utf8_step(pending, b)
            if pending < 0:
                return -1
        return pending

    @classmethod
    def for_tokenizer(cls, tokenizer, vocab_size: int | None = None, eos_ids=None) -> "TokenIndex":
        """One index per tokenizer object (building one takes about a second)."""
        key = (vocab_size, tuple(eos_ids) if eos_ids is not None else None)
        per_tok = _INDEXES.setdefault(tokenizer, {})
        if key not in per_tok:
            per_tok[key] = cls(tokenizer, vocab_size, eos_ids)
        return per_tok[key]

    # --- allowed sets ---------------------------------------------------------------------------
    def allowed(self, g: "CommandGrammar", state: "State") -> Allowed:
        """The token ids that keep `state` alive (EOS included where the command is complete)."""
        if state.kind == "kw":
            # Split by literal: each literal's set (with the tokens crossing into its argument)
            # depends only on that literal, so it is cached across different info dicts.
            prefix = state.prefix
            parts = [self._cached(g.literal_key(i, prefix), lambda i=i: self._walk(g, Kw("kw", prefix, (i,))))
                     for i in state.lits]
            out = parts[0]
            for p in parts[1:]:
                out = out.union(p)
            return out
        key = g.cache_key(state, self.max_len)
        if key is None:
            return self._compute(g, state)
        return self._cached(key, lambda: self._compute(g, state))

    def _cached(self, key, make) -> Allowed:
        hit = self.cache.get(key)
        if hit is None:
            if len(self.cache) > self.CACHE_LIMIT:
                self.cache.clear()
            hit = self.cache[key] = make()
        return hit

    def _compute(self, g: "CommandGrammar", state: "State") -> Allowed:
        kind = g.free_kind(state)
        if kind is None:
            return self._walk(g, state)
        pending = state.pending
        mask = self.plain[kind, pending].clone()
        if kind == "line":  # near the length limit, drop the tokens that do not fit
            mask &= self.need[pending] <= g.line_limit - state.n
        extra = [i for i in self.special[kind] if g.run(state, self.tokens[i]) is not None]
        if g.can_end(state):
            extra += self.eos_ids
        if extra:
            mask.index_fill_(0, torch.tensor(extra, dtype=torch.long), True)
        return Allowed.from_mask(mask)

    def _walk(self, g: "CommandGrammar", state: "State") -> Allowed:
        """Depth-first walk of the trie, advancing the automaton one byte per edge."""
        out = list(self.eos_ids) if g.can_end(state) else []
        stack = [(0, state)]
        children, ends = self.children, self.ends
        while stack:
            node, s = stack.pop()
            edges = g.edges(s)
            kids = children[node]
            if edges is None:  # free text: any byte may be legal, test each child
                for b, child in kids.items():
                    ns = g.step(s, b)
                    if ns is not None:
                        out.extend(ends[child])
                        stack.append((child, ns))
            else:
                for b, ns in edges.items():
                    child = kids.get(b)
                    if child is not None:
                        out.extend(ends[child])
                        stack.append((child, ns))
        return Allowed(out, self.size)

    def brute_force(self, g: "CommandGrammar", state: "State") -> list[int]:
        """The allowed set by running every token through the automaton (tests check against it)."""
        out = [i for i, tok in enumerate(self.tokens) if tok is not None and g.run(state, tok) is not None]
        return sorted(out + (self.eos_ids if g.can_end(state) else []))


_INDEXES: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


# --- the grammar ----------------------------------------------------------------------------------
# States are named tuples (hashable, cheap, compared as tuples); `kind` comes first in each, so a
# state's kind is also s[0].

class Kw(NamedTuple):  # inside a command keyword
    kind: str  # "kw"
    prefix: bytes  # the bytes of the keyword so far
    lits: tuple  # indices of the literals still possible


class Done(NamedTuple):  # a command without argument, complete
    kind: str = "done"


class Line(NamedTuple):  # one-line free text (Search, Find in page)
    kind: str  # "line"
    lit: int
    n: int  # bytes so far
    pending: int  # UTF-8 continuation bytes still owed


class Int(NamedTuple):  # a link id or a scroll count
    kind: str  # "int"
    lit: int
    digits: bytes


class Quote(NamedTuple):  # quote text
    kind: str  # "quote"
    positions: tuple  # where the quote so far ends in the quotable text's bytes
    n: int  # bytes so far


class AnswerText(NamedTuple):  # the answer
    kind: str  # "answer"
    marker: bytes | None  # the digits of an open [n] marker, or None outside one
    pending: int  # UTF-8 continuation bytes still owed
    cited: int  # 0 nothing yet, 1 text, 2 text with a marker
    last: bytes | None  # the marker just closed (citing one quote twice in a row, "[1][1]" or
    # "[1] [1]", is refused: a small model otherwise loops on markers)


class End(NamedTuple):  # past the newline that ended the command
    kind: str = "end"


DONE, END = Done(), End()
State = Kw | Done | Line | Int | Quote | AnswerText | End


class CommandGrammar:
    """The byte automaton of one legal action, given the env's info dict."""

    def __init__(self, info: dict):
        self.answer = info.get("phase") == "answer"
        # The guided scaffold asks that an answer cite at least one of its quotes before it ends.
        self.require_marker = bool(info.get("require_citation")) and bool(info.get("quote_numbers"))
        # The guided scaffold also asks for quotes of whole words and some length: an untrained model
        # otherwise ends a quote after a token or two ("1"), which supports nothing.
        self.min_quote = max(0, int(info.get("min_quote_chars") or 0))
        self.whole_words = self.min_quote > 0
        limits = info.get("limits") or {}
        # bytes of a Search / Find argument and of a quote: the browser's limits in characters (bytes >= chars)
        self.line_limit = int(limits.get("max_query_chars", LINE_LIMIT))
        self.quote_limit = int(limits.get("max_quote_chars", QUOTE_LIMIT))
        self.quote_numbers = tuple(sorted({str(int(n)).encode() for n in info.get("quote_numbers") or []}))
        self.link_ids = tuple(sorted({str(int(n)).encode() for n in info.get("link_ids") or []}))
        self.text = normalize_ws(info.get("quotable_text") or "").encode()
        # A quote starts at a word: the text start or after a space.
        text = self.text
        self.word_starts = tuple(i for i, b in enumerate(text) if b != SPACE and (i == 0 or text[i - 1] == SPACE))
        valid = info.get("valid_commands") or list(COMMANDS)
        self.literals: list[tuple[bytes, str | None]] = []
        for kw in COMMANDS:
            if kw not in valid:
                continue
            lit, arg = COMMANDS[kw]
            if (arg == "link" and not self.link_ids) or (arg == "quote" and not self.word_starts):
                continue  # the command is listed but no argument could be valid
            self.literals.append((lit.encode(), arg))
        if not self.literals:  # the spec says Search is always valid
            self.literals.append((COMMANDS["Search"][0].encode(), "line"))

    def initial(self) -> State:
        if self.answer:
            return AnswerText("answer", None, 0, 0, None)
        return Kw("kw", b"", tuple(range(len(self.literals))))

    # --- the automaton ----------------------------------------------------------------------------
    def can_end(self, s: State) -> bool:
        kind = s.kind
        if kind in ("done", "end"):
            return True
        if kind == "line":
            return s.n > 0 and s.pending == 0
        if kind == "int":
            return s.digits in self._choices(s.lit)
        if kind == "quote":
            p = s.positions[0]  # every position follows the same bytes, so checking one is enough
            at_end = p == len(self.text)
            if self.whole_words:  # at a word end, and long enough unless the text ran out
                return s.n > 0 and (at_end or self.text[p] == SPACE) and (s.n >= self.min_quote or at_end)
            return s.n > 0 and (at_end or not 0x80 <= self.text[p] <= 0xBF)
        if kind == "answer":
            return s.marker is None and s.pending == 0 and s.cited >= (2 if self.require_marker else 1)
        return False

    def step(self, s: State, b: int) -> State | None:
        """The state after byte b, or None when b is illegal."""
        kind = s.kind
        if kind == "end":
            return s if b in WHITESPACE else None
        if b == NL:
            return END if self.can_end(s) else None
        if kind == "kw":
            new = s.prefix + bytes((b,))
            alive = []
            for i in s.lits:
                lit = self.literals[i][0]
                if lit.startswith(new):
                    if len(lit) == len(new):
                        return self._arg_start(i)
                    alive.append(i)
            return Kw("kw", new, tuple(alive)) if alive else None
        if kind == "line":
            n = s.n
            if b < 0x20 or b == 0x7F or (n == 0 and b == SPACE):
                return None
            pending = _utf8_step(s.pending, b)
            if pending < 0 or n + 1 + pending > self.line_limit:
                return None
            return Line("line", s.lit, n + 1, pending)
        if kind == "int":
            digits = s.digits + bytes((b,))
            return Int("int", s.lit, digits) if any(c.startswith(digits) for c in self._choices(s.lit)) else None
        if kind == "quote":
            text = self.text
            if s.n >= self.quote_limit and not 0x80 <= b <= 0xBF:  # past the limit only to finish a character
                return None
            ps = tuple(p + 1 for p in s.positions if p < len(text) and text[p] == b)
            if b == QUOTE_SEP[0]:
                ps = tuple(p for p in ps if text[p - 1:p + 2] != QUOTE_SEP)
            return Quote("quote", ps, s.n + 1) if ps else None
        if kind == "answer":
            marker = s.marker
            if marker is not None:
                if b == ord("]"):
                    ok = marker in self.quote_numbers and marker != s.last
                    return AnswerText("answer", None, 0, 2, marker) if ok else None
                digits = marker + bytes((b,))
                ok = 0x30 <= b <= 0x39 and any(q.startswith(digits) and q != s.last for q in self.quote_numbers)
                return AnswerText("answer", digits, 0, s.cited, s.last) if ok else None
            if b < 0x20 or b == 0x7F:
                return None
            if b == ord("["):
                ok = s.pending == 0 and any(q != s.last for q in self.quote_numbers)  # a marker that may follow
                return AnswerText("answer", b"", 0, s.cited, s.last) if ok else None
            pending = _utf8_step(s.pending, b)
            last = s.last if b in WHITESPACE else None
            return None if pending < 0 else AnswerText("answer", None, pending, s.cited or int(b not in WHITESPACE),
                                                       last)
        return None  # "done": only the newline (handled above) may follow

    def run(self, s: State, data: bytes) -> State | None:
        for b in data:
            s = self.step(s, b)
            if s is None:
                return None
        return s

    def edges(self, s: State) -> dict[int, State] | None:
        """All legal (byte -> next state) pairs where there are few; None for free text."""
        kind = s.kind
        if kind == "line" or (kind == "answer" and s.marker is None):
            return None
        if kind == "quote":
            groups: dict[int, list[int]] = {}
            text = self.text
            for p in s.positions:
                if p < len(text):
                    groups.setdefault(text[p], []).append(p + 1)
            out = {}
            for b in groups:  # step() applies the length limit and the ━ rule
                ns = self.step(s, b)
                if ns is not None:
                    out[b] = ns
        elif kind == "kw":
            out = {}
            for i in s.lits:
                b = self.literals[i][0][len(s.prefix)]
                if b not in out:
                    out[b] = self.step(s, b)
        elif kind == "end":
            out = {b: s for b in WHITESPACE}
        else:  # int, answer marker, done: at most a dozen candidate bytes
            out = {}
            for b in b"0123456789]":
                ns = self.step(s, b)
                if ns is not None:
                    out[b] = ns
        if kind != "end" and self.can_end(s):
            out[NL] = END
        return out

    # --- caching -----------------------------------------------------------------------------------
    def free_kind(self, s: State) -> str | None:
        """'line' or 'answer' where the precomputed plain-token mask applies, else None."""
        if s.kind == "line" and s.n > 0:  # the first byte of an argument must not be a space
            return "line"
        if s.kind == "answer" and s.marker is None:
            return "answer"
        return None

    def cache_key(self, s: State, max_token_len: int):
        """A key covering everything the allowed set of s depends on; None if not worth caching."""
        kind = s.kind
        if kind == "line":  # the length left matters only where the longest token might not fit
            left = self.line_limit - s.n
            return ("line", s.n == 0, left if left <= max_token_len + 3 else -1, s.pending)
        if kind == "int":
            return ("int", self._choices(s.lit), s.digits)
        if kind == "answer":
            return ("answer", *s[1:], self.quote_numbers, self.require_marker)
        if kind == "done":
            return ("done",)
        return None  # quote positions are specific to one window text

    def literal_key(self, i: int, prefix: bytes):
        lit, arg = self.literals[i]
        dep = self.link_ids if arg == "link" else self.text if arg == "quote" else None
        return ("kw", lit, prefix, dep)

    def _arg_start(self, i: int) -> State:
        arg = self.literals[i][1]
        if arg is None:
            return DONE
        if arg == "line":
            return Line("line", i, 0, 0)
        if arg == "quote":
            return Quote("quote", self.word_starts, 0)
        return Int("int", i, b"")

    def _choices(self, i: int) -> tuple[bytes, ...]:
        return self.link_ids if self.literals[i][1] == "link" else SCROLLS


# --- decoding -------------------------------------------------------------------------------------


@dataclass
class DecodeConfig:
    max_new_tokens: int = 64  # past this the grammar steers each row to its nearest end
    overtime: int = 32  # hard cap on the extra tokens that steering may take
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    seed: int = 0
    # Drop finished rows from the batch (and the KV cache): a Back row should not keep computing
    # while an answer row writes a paragraph. False keeps every row to the end, as generate() does.
    drop_finished: bool = True
    # CTRL's penalty on tokens a row already generated (1.0 = off). A small untrained model loops
    # ("The function is used to ... The function is used to ..."); training code keeps it off so
    # the sampling distribution is the model's own.
    repetition_penalty: float = 1.0


@dataclass
class Generation:
    text: str  # the command (or answer), without the newline / EOS that ended it
    token_ids: list[int]  # everything generated, the ending token included
    prompt_ids: list[int]
    logprob: float  # sum over token_ids of log p under the grammar-masked distribution (T=1)
    model_logprob: float  # the same under the unmasked model (T=1), for KL / PPO ratios
    token_logprobs: list[float] = field(default_factory=list)
    token_model_logprobs: list[float] = field(default_factory=list)
    complete: bool = True  # False only if the overtime cap cut a command short

    @property
    def n_tokens(self) -> int:
        return len(self.token_ids)


@torch.no_grad()
def generate(
    model,
    index: TokenIndex,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    grammars: list[CommandGrammar | None],
    config: DecodeConfig = DecodeConfig(),
    max_new_tokens: list[int] | None = None,
    generator: torch.Generator | None = None,
) -> list[Generation]:
    """Decode one action per row of a left-padded batch. A None grammar decodes unconstrained
    (until EOS or the token limit), which the benchmark uses to time the loop alone."""
    B = input_ids.shape[0]
    limits = max_new_tokens or [config.max_new_tokens] * B
    if generator is None and config.temperature > 0:
        generator = torch.Generator().manual_seed(config.seed)
    states = [g.initial() if g is not None else None for g in grammars]
    out_ids: list[list[int]] = [[] for _ in range(B)]
    out_text: list[bytearray] = [bytearray() for _ in range(B)]
    lps: list[list[float]] = [[] for _ in range(B)]
    mlps: list[list[float]] = [[] for _ in range(B)]
    done = [False] * B
    complete = [True] * B
    eos = set(index.eos_ids)

    # Left padding: positions count only real tokens, so a padded row sees what it would alone.
    dev = input_ids.device
    mask = attention_mask.to(torch.long)
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    out = model(input_ids=input_ids, attention_mask=mask, position_ids=pos, use_cache=True, logits_to_keep=1)
    past, last_pos = out.past_key_values, pos[:, -1:]
    logits = out.logits[:, -1, :].float().cpu()  # the grammar's masks live on the CPU
    V = logits.shape[-1]
    if V != index.size:
        raise ValueError(f"the model has {V} logits but the token index {index.size} tokens; build the index "
                         "with TokenIndex.for_tokenizer(tokenizer, vocab_size=<the model's logit count>)")

    step = 0
    live = list(range(B))  # the rows still in the model's batch: logits row r is row live[r]
    while True:
        # 1. mask each row to what its grammar allows
        scores = _penalize_repeats(logits, [out_ids[i] if grammars[i] is not None and grammars[i].answer else []
                                            for i in live], config.repetition_penalty)
        masked = torch.full_like(logits, float("-inf"))
        for r, i in enumerate(live):
            if done[i]:  # kept in the batch (drop_finished=False): it only feeds padding
                masked[r, index.pad_id] = 0.0
                continue
            g, s = grammars[i], states[i]
            if g is None:
                masked[r] = scores[r]
                continue
            if step >= limits[i] - 1:  # the budget's last token: end now, or head for the nearest end
                allowed = _steer_to_end(index, g, s)
            else:
                allowed = index.allowed(g, s)
            if allowed.mask is not None:
                torch.where(allowed.mask, scores[r], _NEG_INF, out=masked[r])
            else:
                masked[r, allowed.ids] = scores[r, allowed.ids]

        # 2. choose
        if config.temperature > 0:
            probs = _top_p(torch.softmax(masked / config.temperature, -1), config.top_p)
            # argmax of p / Exp(1) noise is a draw from p, and much cheaper than torch.multinomial
            noise = torch.empty_like(probs).exponential_(1.0, generator=generator)
            chosen = (probs / noise).max(-1).indices
        else:
            chosen = masked.max(-1).indices
        # log p(chosen) = logit - logsumexp(logits): cheaper than a full log_softmax over the vocab
        pick = chosen[:, None]
        lp = (masked.gather(1, pick).squeeze(1) - masked.logsumexp(-1)).tolist()
        mlp = (logits.gather(1, pick).squeeze(1) - logits.logsumexp(-1)).tolist()

        # 3. advance each row's grammar
        for r, t in enumerate(chosen.tolist()):
            i = live[r]
            if done[i]:
                continue
            out_ids[i].append(t)
            lps[i].append(lp[r])
            mlps[i].append(mlp[r])
            if t in eos:
                done[i] = True
                continue
            tok = index.tokens[t] or b""
            if grammars[i] is not None:
                states[i] = grammars[i].run(states[i], tok)
                assert states[i] is not None, "the mask let through a token the grammar rejects"
                if states[i].kind == "end":
                    tok = tok[: tok.index(NL)]
                    done[i] = True
            out_text[i] += tok
            if step + 1 >= limits[i] + (config.overtime if grammars[i] is not None else 0):
                complete[i] = done[i] or grammars[i] is None
                done[i] = True
        step += 1
        if all(done):
            break

        # 4. one forward step for the batch
        if config.drop_finished and any(done[i] for i in live):
            keep = [r for r, i in enumerate(live) if not done[i]]
            sel = torch.tensor(keep, device=dev)
            past.batch_select_indices(sel)
            mask, last_pos, chosen = mask[sel], last_pos[sel], chosen[keep]
            live = [live[r] for r in keep]
        nxt = chosen[:, None].to(dev)  # a finished row still in the batch was given padding
        mask = torch.cat([mask, torch.ones(len(live), 1, dtype=torch.long, device=dev)], 1)
        last_pos = last_pos + 1
        out = model(input_ids=nxt, attention_mask=mask, position_ids=last_pos, past_key_values=past, use_cache=True)
        past = out.past_key_values
        logits = out.logits[:, -1, :].float().cpu()

    prompts = [row[m.bool()].tolist() for row, m in zip(input_ids, attention_mask)]
    return [
        Generation(
            text=out_text[i].decode("utf-8", errors="replace"),
            token_ids=out_ids[i],
            prompt_ids=prompts[i],
            logprob=float(sum(lps[i])),
            model_logprob=float(sum(mlps[i])),
            token_logprobs=lps[i],
            token_model_logprobs=mlps[i],
            complete=complete[i],
        )
        for i in range(B)
    ]


_NEG_INF = torch.tensor(float("-inf"))


def _penalize_repeats(logits: torch.Tensor, generated: list[list[int]], penalty: float) -> torch.Tensor:
    if penalty == 1.0 or not any(generated):
        return logits
    out = logits.clone()
    for r, ids in enumerate(generated):
        if ids:
            seen = torch.tensor(sorted(set(ids)))
            v = out[r, seen]
            out[r, seen] = torch.where(v > 0, v / penalty, v * penalty)
    return out


def _steer_to_end(index: TokenIndex, g: CommandGrammar, s: State) -> Allowed:
    """Over the token budget: EOS if the command is complete, else the tokens that complete it
    in one step if any, else the usual set (each grammar path makes progress towards an end).
    An answer that still owes a citation is steered into a marker first."""
    if g.can_end(s):
        return Allowed(index.eos_ids, index.size)
    ids = index.allowed(g, s).id_list()
    ending = [t for t in ids if t not in index.eos_ids and g.can_end(g.run(s, index.tokens[t]))]
    if not ending and s.kind == "answer" and g.require_marker and s.marker is None and s.cited < 2:
        # tokens that open (or complete) a [n] marker; the marker's digits and "]" follow
        ending = [t for t in ids if t not in index.eos_ids and index.tokens[t] and b"[" in index.tokens[t]
                  and (ns := g.run(s, index.tokens[t])) is not None and (ns.marker is not None or ns.cited >= 2)]
    return Allowed(ending or ids, index.size)


def _top_p(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    if top_p >= 1.0:
        return probs
    sorted_p, order = probs.sort(-1, descending=True)
    # keep a token if the mass before it is below top_p (the most likely one always stays)
    drop = sorted_p.cumsum(-1) - sorted_p >= top_p
    sorted_p = sorted_p.masked_fill(drop, 0.0)
    return torch.zeros_like(probs).scatter_(-1, order, sorted_p)
