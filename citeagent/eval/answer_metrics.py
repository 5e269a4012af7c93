"""Answer correctness: SQuAD exact match and token F1, HotpotQA's answer precision/recall, and
ALCE's string exact match (recall of short answers inside a long answer).

Definitions follow the official scripts (SQuAD v1.1 `evaluate-v1.1.py`, HotpotQA
`hotpot_evaluate_v1.py`, ALCE `eval.py: compute_str_em`); the code is our own.
"""
from __future__ import annotations

import re
import string
from collections import Counter

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD normalisation: lower case, drop punctuation, drop articles, collapse whitespace.

    The order matters and is SQuAD's: punctuation goes before articles, so "the-end" -> "theend"."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def token_prf(prediction: str, gold: str) -> tuple[float, float, float]:
    """(F1, precision, recall) over normalised tokens, SQuAD style.

    Two empty strings agree (1, 1, 1); one empty side scores 0 (SQuAD v2's convention, which
    v1.1 leaves undefined)."""
    pred = normalize_answer(prediction).split()
    ref = normalize_answer(gold).split()
    if not pred or not ref:
        same = float(pred == ref)
        return same, same, same
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0, 0.0, 0.0
    precision = common / len(pred)
    recall = common / len(ref)
    return 2 * precision * recall / (precision + recall), precision, recall


def token_f1(prediction: str, gold: str) -> float:
    return token_prf(prediction, gold)[0]


def best_exact_match(prediction: str, golds: list[str]) -> float:
    return max((exact_match(prediction, g) for g in golds), default=0.0)


def best_token_f1(prediction: str, golds: list[str]) -> float:
    return max((token_f1(prediction, g) for g in golds), default=0.0)


_YES_NO = ("yes", "no", "noanswer")


def hotpot_answer_prf(prediction: str, gold: str) -> tuple[float, float, float]:
    """HotpotQA's answer (F1, precision, recall): SQuAD token F1, except that a yes/no/noanswer
    on either side scores zero unless both sides are the same word (so "no" never earns
    partial credit against "no, it is not")."""
    p, g = normalize_answer(prediction), normalize_answer(gold)
    if (p in _YES_NO or g in _YES_NO) and p != g:
        return 0.0, 0.0, 0.0
    return token_prf(prediction, gold)


def separate_words(text: str) -> str:
    """SQuAD normalisation, except that punctuation separates words instead of vanishing, so
    that code stays findable: "heapq.nlargest(n)" -> "heapq nlargest n" (SQuAD: "heapqnlargestn")."""
    text = "".join(" " if ch in _PUNCT and ch != "_" else ch for ch in text.lower())
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def contains_answer(prediction: str, golds: list[str], whole_words: bool = True) -> float:
    """1 if any gold answer occurs inside the prediction.

    Long, cited answers rarely equal a short gold string, so this is our "correct" for them.
    By default it matches whole words (so "no" is not found inside "not") after
    `separate_words`; `whole_words=False` is ALCE's `exact_presence`, a plain substring test
    on SQuAD-normalised text."""
    if not whole_words:
        text = normalize_answer(prediction)
        return float(any(normalize_answer(g) and normalize_answer(g) in text for g in golds))
    text = f" {separate_words(prediction)} "
    return float(any(separate_words(g) and f" {separate_words(g)} " in text for g in golds))


def correct(prediction: str, golds: list[str]) -> float:
    """Our "correct": the answer equals a gold answer or holds one (contains_answer)."""
    return max(best_exact_match(prediction, golds), contains_answer(prediction, golds))


def asqa_str_em(prediction: str, short_answer_groups: list[list[str]]) -> float:
    """ALCE's STR-EM for ASQA: the fraction of disambiguated questions (one group of accepted
    short answers each) whose answer appears in the prediction."""
    if not short_answer_groups:
        return 0.0
    hits = [contains_answer(prediction, grp, whole_words=False) for grp in short_answer_groups]
    return sum(hits) / len(hits)
