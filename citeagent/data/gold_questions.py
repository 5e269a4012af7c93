"""Training questions with gold supporting sentences: one record schema for every source.

A record (one JSON object per line of a JSONL file):

    id        unique string
    question  the question text
    answers   accepted short answers, any one is right (non-empty list of strings)
    support   the gold sentences, a non-empty list of objects with at least "text" (the sentence,
              whitespace-normalised); pydocs-gen adds doc_id, title, url, start, end (character
              offsets of the sentence in the document text), HotpotQA adds title and sent_id
    source    "pydocs-gen" or "hotpotqa"
    template  (pydocs-gen) the template that made the question; type (hotpotqa) comparison|bridge

HotpotQA's evaluation questions (hotpotqa_split's held-out part) never become training records.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from pathlib import Path

from citeenv.corpus import BadRecord, _jsonl_records
from citeenv.documents import normalize_ws

log = logging.getLogger(__name__)

REQUIRED = {"id": str, "question": str, "answers": list, "support": list, "source": str}
# What the offsets of a pydocs-gen support entry need beside its text.
PYDOCS_SUPPORT = {"doc_id": str, "url": str, "start": int, "end": int}


class GoldQuestionError(ValueError):
    """A questions file that cannot be used; the message names the file, the line and the fix."""


def load_gold_questions(path: str | Path) -> list[dict]:
    """The records of a gold-questions JSONL file. Fails on the first bad line, naming the file,
    the line, what is wrong and how to fix it: training data is never dropped silently."""
    path = Path(path)
    if not path.is_file():
        raise GoldQuestionError(f"No questions file at {path}. Write one with: "
                                f"citeagent train pydocs-questions --out {path}")
    records, seen = [], {}
    # The corpus reader's line reader: line numbers, .gz, and bytes that are not UTF-8 replaced with a warning.
    for lineno, record in _jsonl_records(path):
        where = f"{path}, line {lineno}"
        if isinstance(record, BadRecord):
            raise GoldQuestionError(f"{where}: {record.problem}. Each line must be one JSON object; fix or delete "
                                    "the line.")
        problem = record_problem(record)
        if problem:
            raise GoldQuestionError(f"{where}: {problem}")
        if record["id"] in seen:
            raise GoldQuestionError(f"{where}: duplicate id {record['id']!r} (first on line {seen[record['id']]}). "
                                    "Ids must be unique; give the line a new id or delete it.")
        seen[record["id"]] = lineno
        records.append(record)
    if not records:
        raise GoldQuestionError(f"{path} holds no questions. Write some with: "
                                f"citeagent train pydocs-questions --out {path}")
    return records


def record_problem(record) -> str | None:
    """What is wrong with one record, with the fix, or None if it is well formed."""
    if not isinstance(record, dict):
        return f"expected a JSON object, got {type(record).__name__}. Write one record per line as an object."
    for name, kind in REQUIRED.items():
        if name not in record:
            return f"the field {name!r} is missing. Every record needs {', '.join(REQUIRED)}."
        if not isinstance(record[name], kind):
            return f"the field {name!r} must be a {kind.__name__}, got {type(record[name]).__name__}."
    if not record["question"].strip():
        return "the question is empty. Write the question text or delete the line."
    answers = record["answers"]
    if not answers or not all(isinstance(a, str) and a.strip() for a in answers):
        return 'the answers must be a non-empty list of non-empty strings, e.g. "answers": ["None"].'
    if not record["support"]:
        return 'the support list is empty. Each question needs its gold sentence(s): "support": [{"text": ...}].'
    for i, s in enumerate(record["support"]):
        if not isinstance(s, dict) or not isinstance(s.get("text"), str) or not s["text"].strip():
            return f'support[{i}] must be an object with a non-empty "text" (the gold sentence).'
        if record["source"] == "pydocs-gen":
            for name, kind in PYDOCS_SUPPORT.items():
                if not isinstance(s.get(name), kind):
                    return (f"support[{i}].{name} must be a {kind.__name__} (pydocs-gen support gives doc_id, url "
                            "and the sentence's start/end offsets in the document text).")
            if not 0 <= s["start"] < s["end"]:
                return f"support[{i}] has start {s['start']} and end {s['end']}; need 0 <= start < end."
    return None


def write_gold_questions(records: Iterable[dict], path: str | Path) -> int:
    """Write records as JSONL (replacing the file); returns how many were written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    tmp = path.with_name(path.name + ".partial")
    with open(tmp, "w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
            n += 1
    tmp.replace(path)  # a failed run leaves the previous file whole
    return n


# --- HotpotQA ----------------------------------------------------------------------------------

def hotpotqa_gold_questions(records: Iterable[dict], heldout: Iterable[dict] | None = None) -> list[dict]:
    """HotpotQA records (official or hub schema) as gold-question records, one per question whose
    supporting facts all point at sentences of its context.

    heldout: the evaluation records that must never become training data; by default the held-out
    part of the shared dev file as `hotpotqa_split` cuts it. Records matching one by id or by
    question text are left out."""
    from citeagent.eval.datasets import hotpot_question_id, question_key
    from citeagent.train import hotpotqa_split
    from citeenv.sources.hotpotqa import normalize_hotpotqa_record, read_hotpotqa_records

    if heldout is None:
        _train, heldout = hotpotqa_split(list(read_hotpotqa_records()))
    held = list(heldout)
    held_ids = {hotpot_question_id(r) for r in held}
    held_keys = {question_key(r["question"]) for r in held}
    out, left_out, unresolved = [], 0, 0
    for n, row in enumerate(records):
        rec = normalize_hotpotqa_record(row, f"HotpotQA record {n}")
        qid = hotpot_question_id(rec)
        if qid in held_ids or question_key(rec["question"]) in held_keys:
            left_out += 1
            continue
        paragraphs = {}
        for title, sentences in rec["context"]:
            paragraphs.setdefault(title, sentences)
        support = []
        for title, sent_id in rec["supporting_facts"]:
            sentences = paragraphs.get(title)
            if sentences is None or not 0 <= sent_id < len(sentences) or not sentences[sent_id].strip():
                support = []  # HotpotQA has a few facts past the paragraph's end: the gold is incomplete
                break
            support.append({"title": title, "text": normalize_ws(sentences[sent_id]), "sent_id": sent_id})
        if not support or not rec["answer"].strip():
            unresolved += 1
            continue
        out.append({"id": qid, "question": rec["question"], "answers": [rec["answer"]], "support": support,
                    "type": rec["type"], "source": "hotpotqa"})
    if left_out or unresolved:
        log.info("hotpotqa: left out %d held-out question(s) and %d with supporting facts outside their context",
                 left_out, unresolved)
    return out
