"""The one comparison schema every preference source is turned into, and its exchange format.

A `Comparison` is two cited answers to one question and a WebGPT-style score: `score_0` is the
strength of the preference for answer 0 over answer 1, from -1 to 1 (`score_1 = -score_0`).
On disk it is a row of the `openai/webgpt_comparisons` schema, so public comparisons, the
labelling app's export and every adapter train the same reward model.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field

from citeagent.answer import Answer, Quote

# The columns of openai/webgpt_comparisons. Our export adds one column, `meta`, which readers of the
# public schema ignore and which carries what the public schema has no place for (urls, annotator).
WEBGPT_COLUMNS = ("question", "quotes_0", "answer_0", "tokens_0", "score_0", "quotes_1", "answer_1", "tokens_1", "score_1")

LABEL_MODES = ("webgpt", "graded")


class DataError(ValueError):
    """Bad preference data; the message names the row, the problem and the fix."""


@dataclass
class Comparison:
    question: str
    answer_0: Answer
    answer_1: Answer
    score_0: float  # preference for answer_0 over answer_1 in [-1, 1]; 0 is a tie
    source: str = ""
    id: str = ""  # stable id within the source (judgement id, row number)
    group: str = ""  # comparisons sharing a group always land in the same split (the question)
    meta: dict = field(default_factory=dict)

    @property
    def score_1(self) -> float:
        return -self.score_0

    def label(self, mode: str = "webgpt") -> float:
        """P(answer_0 is better) as a training target.

        "webgpt": ties are soft 50% labels and every other score is a hard label by its sign, as
        WebGPT trained its reward model. "graded": the score's strength is kept, p = (1 + score_0) / 2."""
        if mode == "webgpt":
            return 0.5 if self.score_0 == 0 else float(self.score_0 > 0)
        if mode == "graded":
            return (1.0 + self.score_0) / 2.0
        raise ValueError(f"unknown label mode {mode!r}; use one of {', '.join(LABEL_MODES)}")

    def split_key(self) -> str:
        return self.group or self.question

    def content_key(self) -> str:
        """Hash of the question and the unordered pair of answers: the same pair shown either way round."""
        a, b = sorted([answer_key(self.answer_0), answer_key(self.answer_1)])
        return hashlib.sha256(json.dumps([self.question, a, b], ensure_ascii=False).encode()).hexdigest()


def answer_key(a: Answer) -> str:
    quotes = [[q.n, q.title, q.url, q.text] for q in a.quotes]
    return json.dumps([a.text, a.declined, quotes], ensure_ascii=False)


def answers_identical(a: Answer, b: Answer) -> bool:
    return answer_key(a) == answer_key(b)


def check_comparison(c: Comparison, where: str) -> None:
    """Raise DataError for a comparison no reward model should learn from."""
    if not c.question.strip():
        raise DataError(f"{where}: the question is empty. Every comparison needs the question both answers answer.")
    for i, a in enumerate((c.answer_0, c.answer_1)):
        if not a.text.strip() and not a.declined:
            raise DataError(f"{where}: answer_{i} is empty. Remove the row or fill in the answer text.")
    if not isinstance(c.score_0, (int, float)) or not math.isfinite(c.score_0) or not -1.0 <= c.score_0 <= 1.0:
        raise DataError(f"{where}: score_0 must be a number from -1 to 1 (got {c.score_0!r}).")
    if answers_identical(c.answer_0, c.answer_1):
        raise DataError(
            f"{where}: the two answers are identical (same text and quotes), so the comparison carries no "
            "preference. Remove the row."
        )


# --- the webgpt_comparisons row format -----------------------------------------------------------


def to_webgpt_row(c: Comparison) -> dict:
    def quotes(a: Answer) -> dict:
        return {"title": [q.title for q in a.quotes], "extract": [q.text for q in a.quotes]}

    meta = dict(c.meta)
    meta.setdefault("source", c.source)
    meta.setdefault("id", c.id)
    meta.setdefault("group", c.group)
    # urls, quote numbers and declines have no column in the public schema
    meta["answers"] = [_answer_extras(c.answer_0), _answer_extras(c.answer_1)]
    return {
        "question": {"dataset": c.source, "id": c.id, "full_text": c.question},
        "quotes_0": quotes(c.answer_0),
        "answer_0": c.answer_0.text,
        "tokens_0": [],  # WebGPT's GPT-2 tokens of its own prompt; meaningless for our answers
        "score_0": float(c.score_0),
        "quotes_1": quotes(c.answer_1),
        "answer_1": c.answer_1.text,
        "tokens_1": [],
        "score_1": float(-c.score_0),
        "meta": meta,
    }


def _answer_extras(a: Answer) -> dict:
    return {"urls": [q.url for q in a.quotes], "numbers": [q.n for q in a.quotes], "declined": a.declined}


def from_webgpt_row(row, where: str, source: str = "webgpt") -> Comparison:
    """Parse and check one row of the webgpt_comparisons schema (ours may add `meta`)."""
    if not isinstance(row, dict):
        raise DataError(f"{where}: a comparison row must be a JSON object, got {type(row).__name__}.")
    missing = [k for k in ("question", "quotes_0", "answer_0", "score_0", "quotes_1", "answer_1") if k not in row]
    if missing:
        raise DataError(
            f"{where}: missing field(s) {', '.join(missing)}. Rows must follow the openai/webgpt_comparisons "
            "schema (question{full_text}, quotes_0{title,extract}, answer_0, score_0, quotes_1, answer_1, score_1)."
        )
    q = row["question"]
    if isinstance(q, dict):
        if "full_text" not in q:
            raise DataError(f"{where}: question must have a 'full_text' field.")
        question, qid, dataset = str(q["full_text"] or ""), str(q.get("id") or ""), str(q.get("dataset") or "")
    elif isinstance(q, str):
        question, qid, dataset = q, "", ""
    else:
        raise DataError(f"{where}: question must be an object with 'full_text' (got {type(q).__name__}).")
    meta = row.get("meta") or {}
    if isinstance(meta, str):  # a datasets export keeps meta as JSON text
        try:
            meta = json.loads(meta)
        except json.JSONDecodeError:
            raise DataError(f"{where}: meta is not valid JSON.") from None
    if not isinstance(meta, dict):
        raise DataError(f"{where}: meta must be an object when present.")
    extras = meta.get("answers") or [{}, {}]
    if not isinstance(extras, list) or len(extras) != 2:
        raise DataError(f"{where}: meta.answers must be a list of two objects.")
    answers = []
    for i in (0, 1):
        text = row[f"answer_{i}"]
        if not isinstance(text, str):
            raise DataError(f"{where}: answer_{i} must be a string (got {type(text).__name__}).")
        answers.append(Answer(question=question, text=text, quotes=_parse_quotes(row[f"quotes_{i}"], extras[i] or {}, f"{where}: quotes_{i}"),
                              declined=bool((extras[i] or {}).get("declined", False))))
    score = row["score_0"]
    if isinstance(score, bool) or not isinstance(score, (int, float)):
        raise DataError(f"{where}: score_0 must be a number from -1 to 1 (got {score!r}).")
    if "score_1" in row and row["score_1"] is not None:
        s1 = row["score_1"]
        if isinstance(s1, bool) or not isinstance(s1, (int, float)) or abs(float(s1) + float(score)) > 1e-6:
            raise DataError(f"{where}: score_1 must equal -score_0 (got score_0={score!r}, score_1={s1!r}).")
    c = Comparison(
        question=question, answer_0=answers[0], answer_1=answers[1], score_0=float(score),
        source=str(meta.get("source") or dataset or source), id=str(meta.get("id") or qid),
        group=str(meta.get("group") or question), meta={k: v for k, v in meta.items() if k != "answers"},
    )
    check_comparison(c, where)
    return c


def _parse_quotes(value, extras: dict, where: str) -> list[Quote]:
    if value is None:
        return []
    if isinstance(value, dict):  # the Hugging Face form: {"title": [...], "extract": [...]}
        titles, extracts = value.get("title") or [], value.get("extract")
        if extracts is None:
            raise DataError(f"{where} needs an 'extract' list (and a 'title' list of the same length).")
        if not isinstance(extracts, list) or not isinstance(titles, list) or (titles and len(titles) != len(extracts)):
            raise DataError(f"{where}: 'title' and 'extract' must be lists of the same length.")
        pairs = list(zip(titles or [""] * len(extracts), extracts))
    elif isinstance(value, list):  # the raw JSONL form: [{"title": ..., "extract": ...}, ...]
        pairs = []
        for j, item in enumerate(value):
            if not isinstance(item, dict) or "extract" not in item:
                raise DataError(f"{where}[{j}] must be an object with 'title' and 'extract'.")
            pairs.append((item.get("title") or "", item["extract"]))
    else:
        raise DataError(f"{where} must be {{title: [...], extract: [...]}} (got {type(value).__name__}).")
    urls = extras.get("urls") or []
    numbers = extras.get("numbers") or []
    out = []
    for j, (title, extract) in enumerate(pairs):
        if not isinstance(extract, str) or not isinstance(title, str):
            raise DataError(f"{where}: quote {j + 1} has a title or extract that is not a string.")
        n = numbers[j] if j < len(numbers) and isinstance(numbers[j], int) else j + 1
        url = urls[j] if j < len(urls) and isinstance(urls[j], str) else ""
        out.append(Quote(n=n, title=title, url=url, text=extract))
    return out
