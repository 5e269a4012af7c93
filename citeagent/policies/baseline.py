"""A retrieval baseline that needs no training: search the question, open the best results,
quote the sentences that best match the question, answer extractively from those quotes.

It is the measured baseline and the fallback when no model is available. It is stateless: every
decision is read off the observation's `info`, so it batches trivially and can replay any state.
"""
from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass

_TOKEN = re.compile(r"[A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)*")
_SENT = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9`'\"(\[])")
STOPWORDS = frozenset(
    """a an the of to in on for and or is are was were be been being by with as at from that this
    these those it its which who whom what when where why how does do did can could should would
    will shall may might not no than then there their they he she his her you your we our i me my
    into about over under between after before so if else also only just any some such""".split()
)


def content_words(text: str) -> list[str]:
    """Lowercased word tokens minus stopwords; dotted names (json.dumps) also give their parts."""
    out = []
    for tok in _TOKEN.findall(text.lower()):
        if tok in STOPWORDS:
            continue
        out.append(tok)
        if "." in tok:
            out.extend(p for p in tok.split(".") if p and p not in STOPWORDS)
    return out


def sentences(text: str) -> list[str]:
    """Sentences within paragraphs. Docstrings wrap lines mid-sentence, so lines of a paragraph
    are joined, except a leading signature or heading line, which stands on its own."""
    out = []
    for para in re.split(r"\n\s*\n", text):
        lines = [ln.strip() for ln in para.splitlines() if ln.strip()]
        if len(lines) > 1 and not lines[0].endswith((".", ":", ",")) and ("(" in lines[0] or len(lines[0]) < 40):
            out.append(lines.pop(0))
        out.extend(s.strip() for s in _SENT.split(" ".join(lines)) if s.strip())
    return out


def is_prose(sentence: str) -> bool:
    """Mostly letters: skips rule lines, grammar productions and bare signatures."""
    letters = sum(ch.isalpha() or ch == " " for ch in sentence)
    return letters >= 0.8 * len(sentence) and " " in sentence


def overlap_score(question_words: Counter, sentence: str) -> float:
    """Question-word coverage of a sentence, length-normalised so long sentences don't win by size."""
    words = content_words(sentence)
    if not words:
        return 0.0
    hits = sum(1 for w in set(words) if w in question_words)
    return hits / math.sqrt(len(words) + 4)


@dataclass
class BaselineConfig:
    open_results: int = 3  # how many search results to read
    quotes_per_page: int = 1
    min_score: float = 0.25  # below this a sentence is not worth quoting
    max_quote_chars: int = 400
    answer_quotes: int = 1  # quotes stitched into the answer


class BaselinePolicy:
    name = "baseline"

    def __init__(self, config: BaselineConfig | None = None):
        self.config = config or BaselineConfig()

    def act_batch(self, observations: list[str], infos: list[dict]) -> list[str]:
        return [self.act(o, i) for o, i in zip(observations, infos)]

    def act(self, observation: str, info: dict) -> str:
        c = self.config
        q_words = Counter(content_words(info["question"]))
        if info["phase"] == "answer":
            return self._answer(info, q_words)
        past = info.get("past_actions", [])
        searched = any(a.startswith("Search ") for a in past)
        if not searched:
            return f"Search {info['question']}"
        view = info.get("view")
        if view == "document":
            url = info["page"]["url"]
            quoted_here = sum(1 for q in info["quotes"] if q["url"] == url)
            if quoted_here < c.quotes_per_page and "Quote:" in info["valid_commands"] and not past[-1].startswith("Quote:"):
                best = self._best_sentence(info.get("window_text") or info["quotable_text"], q_words, {q["text"] for q in info["quotes"]})
                if best is not None:
                    return f"Quote: {best}"
            return "Back" if "Back" in info["valid_commands"] else "End: Answer"
        if view == "results":
            visited = set(info.get("visited", []))
            opened = sum(1 for a in past if a.startswith("Clicked on link"))
            if opened < c.open_results:
                for r in info.get("results", []):
                    if r["url"] not in visited:
                        return f"Clicked on link {r['id']}"
        if info["quotes"]:
            return "End: Answer"
        return "End: Decline"

    def confidence(self, answer: dict) -> float:
        """How well the quotes match the question: the decline curve drops the lowest first."""
        q_words = Counter(content_words(answer["question"]))
        return max((overlap_score(q_words, q["text"]) for q in answer["quotes"]), default=0.0)

    def _best_sentence(self, text: str, q_words: Counter, taken: set[str]) -> str | None:
        best, best_score = None, self.config.min_score
        for sent in sentences(text):
            sent = " ".join(sent.split())
            if len(sent) > self.config.max_quote_chars or sent in taken or len(sent) < 25 or not is_prose(sent):
                continue
            score = overlap_score(q_words, sent)
            if score > best_score:
                best, best_score = sent, score
        return best

    def _answer(self, info: dict, q_words: Counter) -> str:
        """Extractive: the best-matching quotes, each followed by its marker."""
        ranked = sorted(info["quotes"], key=lambda q: -overlap_score(q_words, q["text"]))
        chosen = ranked[: self.config.answer_quotes]
        parts = []
        for q in chosen:
            text = q["text"].rstrip()
            end = "" if text.endswith((".", "!", "?")) else "."
            parts.append(f"{text.rstrip('.!?')} [{q['n']}]{'.' if end == '' else end}")
        return " ".join(parts)
