"""Answers produced outside citeagent: a JSONL of {question, answer, quotes} (optionally id,
declined, score), one answer per line, matched to a data set's questions.

Bad input never stops the run. Each line ends up as one of:
- a prediction matched to a question (by `id`, else by the question text);
- a failure: a line that is not JSON, or whose answer is malformed (`Answer.from_dict` says
  why); it is scored 0 on every metric, with that reason;
- unmatched: an answer to a question the data set does not have, or a second answer to the
  same question; listed in the run, not scored.

The records.jsonl of an earlier `citeagent eval` run is also a predictions file: its answers are
scored again (with another judge, say) and its traces, costs and scores are kept.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from citeagent.answer import Answer
from citeagent.eval.answer_metrics import normalize_answer
from citeagent.eval.datasets import EvalExample

COST_METRICS = ("n_actions", "n_invalid", "tokens_generated", "seconds")


@dataclass
class Prediction:
    line: int
    example: EvalExample | None  # None: not matched to a question
    answer: Answer | None  # None: malformed
    score: float | None
    error: str  # "" when the line is a usable answer
    carried: dict | None = None  # from an earlier run's record: trace, costs, reward score


def _question_key(q: str) -> str:
    return normalize_answer(q)


def read_predictions(path: str | Path, examples: list[EvalExample]) -> list[Prediction]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No predictions file at {path}.")
    by_id = {e.id: e for e in examples}
    by_q = {}
    for e in examples:
        by_q.setdefault(_question_key(e.question), e)
    taken: set[str] = set()
    out: list[Prediction] = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for ln, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
            except (json.JSONDecodeError, RecursionError) as e:
                why = e.msg if isinstance(e, json.JSONDecodeError) else "nested too deeply"
                out.append(Prediction(ln, None, None, None, f"malformed prediction, line {ln}: not JSON ({why})"))
                continue
            carried = None
            if isinstance(d, dict) and "metrics" in d and d.get("answer") is None:  # a failed record of a run
                ex = by_id.get(str(d.get("id")))
                if ex is not None:
                    taken.add(ex.id)
                out.append(Prediction(ln, ex, None, None, f"line {ln}: the earlier run has no answer: {d.get('error')}"))
                continue
            if isinstance(d, dict) and isinstance(d.get("answer"), dict) and "metrics" in d:
                carried = {"trace": d.get("trace") or [], "reward_score": d.get("reward_score"),
                           "cost": {k: v for k, v in (d.get("metrics") or {}).items() if k in COST_METRICS},
                           "terminated": d.get("terminated"), "truncated": d.get("truncated")}
                d = {**d["answer"], "id": d.get("id"), "score": d.get("score")}
            ex = None
            if isinstance(d, dict):
                ex = by_id.get(str(d.get("id"))) if d.get("id") is not None else None
                if ex is None and isinstance(d.get("question"), str):
                    ex = by_q.get(_question_key(d["question"]))
            try:
                ans = Answer.from_dict(d)
            except (ValueError, TypeError) as e:
                out.append(Prediction(ln, ex, None, None, f"malformed prediction, line {ln}: {e}"))
                if ex is not None:
                    taken.add(ex.id)
                continue
            if ex is None:
                out.append(Prediction(ln, None, ans, None, f"line {ln}: question not in the data set: {ans.question[:80]!r}"))
                continue
            if ex.id in taken:
                out.append(Prediction(ln, None, ans, None, f"line {ln}: a second answer to question {ex.id!r}; the first is scored"))
                continue
            taken.add(ex.id)
            score = d.get("score")
            out.append(Prediction(ln, ex, ans, float(score) if isinstance(score, (int, float)) else None, "", carried))
    return out
