"""Keeps generated training questions away from the evaluation questions they could leak.

A generated question is dropped when it
- has the same question key as an evaluation question (case and whitespace ignored),
- shares most of its content words with one (Jaccard >= `jaccard` over content words), or
- is supported on one of an evaluation question's support pages AND has one of its answers
  (normalised as answers are scored), i.e. it teaches that question's fact from that page.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

from citeagent.eval.answer_metrics import normalize_answer
from citeagent.eval.datasets import question_key
from citeagent.policies.baseline import content_words

DEFAULT_JACCARD = 0.6


REASONS = {
    "same_question": "same question",
    "overlapping_question": "content-word Jaccard >= threshold",
    "same_page_and_answer": "same support page and answer as an evaluation question",
}


@dataclass
class LeakageReport:
    checked: int = 0
    dropped_by: Counter = field(default_factory=Counter)  # REASONS key -> questions dropped for it
    examples: list[str] = field(default_factory=list)  # a few dropped questions, with the eval id they match

    @property
    def dropped(self) -> int:
        return sum(self.dropped_by.values())

    def summary(self) -> str:
        reasons = ", ".join(f"{self.dropped_by[k]} {text}" for k, text in REASONS.items())
        return f"leakage guard: {self.dropped} of {self.checked} dropped ({reasons})"


def drop_leaking(records: list[dict], eval_examples, jaccard: float = DEFAULT_JACCARD,
                 report: LeakageReport | None = None) -> list[dict]:
    """The records that leak none of `eval_examples` (EvalExample: question, answers, gold_urls)."""
    report = report if report is not None else LeakageReport()
    eval_keys = {question_key(e.question): e.id for e in eval_examples}
    eval_words = [(set(content_words(e.question)), e.id) for e in eval_examples]
    answers_on_page: dict[str, dict[str, str]] = defaultdict(dict)  # url -> normalised answer -> eval id
    for e in eval_examples:
        for url in e.gold_urls or []:
            for a in e.answers:
                answers_on_page[url][normalize_answer(a)] = e.id
    kept = []
    for record in records:
        report.checked += 1
        reason = _leak(record, eval_keys, eval_words, answers_on_page, jaccard)
        if reason is None:
            kept.append(record)
            continue
        kind, eval_id = reason
        report.dropped_by[kind] += 1
        if len(report.examples) < 10:
            report.examples.append(f"{record['question']} ({kind}: {eval_id})")
    return kept


def _leak(record, eval_keys, eval_words, answers_on_page, jaccard):
    """(reason, evaluation id) of the first way `record` leaks an evaluation question, or None."""
    key = question_key(record["question"])
    if key in eval_keys:
        return "same_question", eval_keys[key]
    words = set(content_words(record["question"]))
    for other, eval_id in eval_words:
        union = words | other
        if union and len(words & other) / len(union) >= jaccard:
            return "overlapping_question", eval_id
    answers = {normalize_answer(a) for a in record["answers"]}
    for support in record["support"]:
        page = answers_on_page.get(support.get("url", "")) or {}
        hit = next((page[a] for a in answers if a in page), None)
        if hit is not None:
            return "same_page_and_answer", hit
    return None
