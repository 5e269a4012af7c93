"""The queue of pairs to label: filling it (`citeagent label enqueue`) and handing pairs out.

Pairs come from a policy's sampled answers (two or more per question; every two distinct answers
make a pair) or from a JSONL of ready pairs. A whole file goes in one transaction: one bad row and
nothing is queued. With a reward model, each pair's priority is how unsure the model is about it
(1 when it gives 50/50, 0 when certain), and the least certain pairs are labelled first.
"""
from __future__ import annotations

import itertools
import math
import random
import secrets
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from sqlalchemy import and_, exists, func, or_, select
from sqlalchemy.engine import Engine

from citeagent.answer import Answer
from citeagent.feedback.db import Assignment, Pair, transaction, utcnow
from citeagent.reward.schema import Comparison, DataError, answers_identical, from_webgpt_row
from citeagent.reward.sources import jsonl_rows, parse_policy_answer

FORMATS = ("auto", "policy", "pairs")


@dataclass
class PairItem:
    question: str
    a: Answer
    b: Answer
    origin: str  # file and line(s), kept with the pair so a reviewer can find where it came from

    def content_key(self) -> str:
        return Comparison(self.question, self.a, self.b, 0.0).content_key()


@dataclass
class EnqueueResult:
    added: list[int] = field(default_factory=list)
    skipped_existing: int = 0
    single_answer_questions: int = 0  # questions whose samples were all the same answer


def _is_pair_row(row: dict) -> bool:
    # any one of the pair fields marks the row as a (possibly incomplete) pair, not a single answer
    return isinstance(row, dict) and any(k in row for k in ("answer_a", "answer_b", "answer_0", "answer_1"))


def _complete_pair(row: dict) -> bool:
    return ("answer_a" in row and "answer_b" in row) or ("answer_0" in row and "answer_1" in row)


def _answer_field(value, question: str, where: str) -> Answer:
    if isinstance(value, str):
        return Answer(question=question, text=value)
    if isinstance(value, dict):
        return parse_policy_answer({**value, "question": value.get("question", question)}, where)
    raise DataError(f"{where}: an answer must be a string or an answer object (got {type(value).__name__}).")


def read_pairs(path: str | Path, fmt: str = "auto", max_pairs_per_question: int = 6, seed: int = 0) -> tuple[list[PairItem], int]:
    """Pairs from a file, and how many questions had only one distinct answer."""
    if fmt not in FORMATS:
        raise ValueError(f"--format must be one of {', '.join(FORMATS)} (got {fmt!r})")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist.")
    rows = list(jsonl_rows(path))
    if not rows:
        raise DataError(f"{path} holds no rows.")
    kinds = {_is_pair_row(r) for _, r in rows}
    if fmt == "auto":
        if len(kinds) > 1:
            first_other = next(w for w, r in rows if _is_pair_row(r) != _is_pair_row(rows[0][1]))
            raise DataError(f"{first_other}: the file mixes ready pairs (answer_a/answer_b) and single answers. "
                            "Put them in separate files.")
        fmt = "pairs" if kinds == {True} else "policy"
    if fmt == "pairs":
        return [_pair_row(r, w) for w, r in rows], 0
    return _policy_pairs(rows, max_pairs_per_question, seed)


def _pair_row(row, where: str) -> PairItem:
    if not isinstance(row, dict) or not _complete_pair(row):
        raise DataError(f"{where}: a pair row needs 'question', 'answer_a' and 'answer_b'.")
    if "quotes_0" in row:  # a row of the webgpt_comparisons schema
        c = from_webgpt_row(row, where)
        return PairItem(c.question, c.answer_0, c.answer_1, where)
    question = row.get("question")
    if isinstance(question, dict):
        question = question.get("full_text")
    if not isinstance(question, str) or not question.strip():
        raise DataError(f"{where}: the question is missing or empty.")
    ka, kb = ("answer_a", "answer_b") if "answer_a" in row else ("answer_0", "answer_1")
    a, b = _answer_field(row[ka], question, f"{where} {ka}"), _answer_field(row[kb], question, f"{where} {kb}")
    for name, ans in ((ka, a), (kb, b)):
        if not ans.text.strip() and not ans.declined:
            raise DataError(f"{where}: {name} is empty.")
    if answers_identical(a, b):
        raise DataError(f"{where}: {ka} and {kb} are identical, so there is nothing to compare. Remove the row.")
    return PairItem(question, a, b, where)


def _policy_pairs(rows, max_pairs_per_question: int, seed: int) -> tuple[list[PairItem], int]:
    by_q: dict[str, list[tuple[Answer, str]]] = {}
    for where, row in rows:
        ans = parse_policy_answer(row, where)
        if not ans.text.strip() and not ans.declined:
            raise DataError(f"{where}: the answer text is empty.")
        group = by_q.setdefault(ans.question.strip(), [])
        if not any(answers_identical(ans, other) for other, _ in group):
            group.append((ans, where))
    items, single = [], 0
    for question, answers in by_q.items():
        if len(answers) < 2:
            single += 1
            continue
        combos = list(itertools.combinations(range(len(answers)), 2))
        rng = random.Random(f"{seed}:{question}")
        rng.shuffle(combos)
        for i, j in combos[:max_pairs_per_question]:
            (a, wa), (b, wb) = answers[i], answers[j]
            items.append(PairItem(question, a, b, f"{wa}; {wb.rsplit(' ', 1)[-1]}"))
    return items, single


def uncertainty(rm, items: list[PairItem]) -> list[float]:
    """1 - |2p - 1| with p = P(a better than b) under the reward model: 1 means a coin flip."""
    qs = [it.question for it in items for _ in (0, 1)]
    ans = [x for it in items for x in (it.a, it.b)]
    scores = rm.score_batch(qs, ans)
    out = []
    for k in range(len(items)):
        p = 1.0 / (1.0 + math.exp(-(scores[2 * k] - scores[2 * k + 1])))
        out.append(1.0 - abs(2 * p - 1))
    return out


def enqueue(engine: Engine, items: list[PairItem], skip_existing: bool = False,
            priorities: list[float] | None = None) -> EnqueueResult:
    """Queue every pair or none: a duplicate inside the batch, or (unless skip_existing) a pair
    already queued, stops the whole batch with the rows named."""
    if not items:
        raise DataError("Nothing to enqueue: the input gave no pair of two different answers.")
    seen: dict[str, str] = {}
    for it in items:
        key = it.content_key()
        if key in seen:
            raise DataError(f"{it.origin}: the same pair (question and both answers) as {seen[key]}. "
                            "Remove the repeated row; each pair is queued once.")
        seen[key] = it.origin
    result = EnqueueResult()
    with transaction(engine) as s:
        existing = {}
        keys = list(seen)
        for start in range(0, len(keys), 500):
            for pid, key in s.execute(select(Pair.id, Pair.content_key).where(Pair.content_key.in_(keys[start:start + 500]))):
                existing[key] = pid
        for k, it in enumerate(items):
            key = it.content_key()
            if key in existing:
                if not skip_existing:
                    raise DataError(f"{it.origin}: this pair is already queued (pair {existing[key]}). "
                                    "Pass --skip-existing to queue only the new pairs of a file.")
                result.skipped_existing += 1
                continue
            pair = Pair(question=it.question, answer_a=it.a.to_json(), answer_b=it.b.to_json(), content_key=key,
                        source=it.origin[:200], priority=priorities[k] if priorities else 0.0)
            s.add(pair)
            s.flush()
            result.added.append(pair.id)
    return result


def reprioritize(engine: Engine, rm) -> int:
    """Re-score the pairs nobody has judged yet with a (newer) reward model."""
    with transaction(engine) as s:
        judged = select(Assignment.pair_id).where(Assignment.status == "done")
        pairs = list(s.scalars(select(Pair).where(Pair.id.not_in(judged))))
        items = [PairItem(p.question, *p.answers(), origin="") for p in pairs]
        for p, pr in zip(pairs, uncertainty(rm, items) if items else []):
            p.priority = pr
        return len(pairs)


# --- handing pairs to annotators ---------------------------------------------------------------------


def next_assignment(engine: Engine, user_id: int, labels_per_pair: int = 1, ttl_minutes: int = 30,
                    shuffle: bool = True) -> Assignment | None:
    """The annotator's open assignment, or a new one for the highest-priority pair that still needs
    labels and that they have not seen; None when there is nothing left for them.

    A pair is taken while an unexpired assignment holds it, so two annotators are never given the
    same pair beyond `labels_per_pair`; an abandoned assignment frees its pair after `ttl_minutes`."""
    now = utcnow()
    with transaction(engine) as s:
        mine = s.scalar(select(Assignment).where(Assignment.user_id == user_id, Assignment.status == "open")
                        .order_by(Assignment.id).limit(1))
        if mine is not None:
            if mine.expires_at < now:
                mine.expires_at = now + timedelta(minutes=ttl_minutes)
            return mine
        holding = (select(func.count(Assignment.id))
                   .where(Assignment.pair_id == Pair.id,
                          or_(Assignment.status == "done", and_(Assignment.status == "open", Assignment.expires_at > now)))
                   .scalar_subquery())
        seen = exists().where(Assignment.pair_id == Pair.id, Assignment.user_id == user_id)
        pair = s.scalar(select(Pair).where(~seen, holding < labels_per_pair)
                        .order_by(Pair.priority.desc(), Pair.id).limit(1).with_for_update(skip_locked=True))
        if pair is None:
            return None
        a = Assignment(pair_id=pair.id, user_id=user_id, swapped=bool(shuffle and secrets.randbelow(2)),
                       nonce=secrets.token_urlsafe(24), created_at=now, expires_at=now + timedelta(minutes=ttl_minutes))
        s.add(a)
        s.flush()
        return a


def queue_stats(engine: Engine, labels_per_pair: int = 1) -> dict:
    with transaction(engine) as s:
        n_pairs = s.scalar(select(func.count(Pair.id)))
        done = (select(Assignment.pair_id, func.count(Assignment.id).label("n")).where(Assignment.status == "done")
                .group_by(Assignment.pair_id).subquery())
        complete = s.scalar(select(func.count()).select_from(done).where(done.c.n >= labels_per_pair))
        n_judgements = s.scalar(select(func.count(Assignment.id)).where(Assignment.status == "done"))
    return {"pairs": n_pairs, "pairs_fully_labelled": complete, "judgements": n_judgements,
            "pairs_remaining": n_pairs - complete}

