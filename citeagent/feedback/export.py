"""Export judgements as comparisons in the `openai/webgpt_comparisons` schema: a JSONL file or a
Hugging Face `datasets` directory, which `citeagent train rm --data PATH` reads like the public data.

One row per judgement (a pair labelled by two annotators gives two rows, as in WebGPT's data).
Everything the public schema has no column for (urls, the GopherCite/Sparrow judgements, the
annotator, times, the app version) goes into the extra `meta` column. Files appear atomically:
an interrupted export never leaves a half-written file behind.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.engine import Engine

from citeagent.answer import Answer
from citeagent.feedback.db import Judgement, Pair, RuleLabel, transaction
from citeagent.reward.schema import Comparison, to_webgpt_row

SOURCE = "citeagent-label"


def judgement_comparisons(engine: Engine) -> list[Comparison]:
    """Every judgement as a Comparison of answer A (answer_0) and B (answer_1), built from the
    texts the annotator was shown."""
    out = []
    with transaction(engine) as s:
        broken: dict[tuple[int, str], list[str]] = {}
        for label in s.scalars(select(RuleLabel).order_by(RuleLabel.id)):
            broken.setdefault((label.judgement_id, label.side), []).append(label.rule_id)
        rows = s.execute(select(Judgement, Pair.source).join(Pair, Pair.id == Judgement.pair_id).order_by(Judgement.id))
        for j, pair_source in rows:
            left, right = Answer.from_dict(json.loads(j.shown_left)), Answer.from_dict(json.loads(j.shown_right))
            a, b = (right, left) if j.shown_swapped else (left, right)
            out.append(Comparison(
                question=j.shown_question, answer_0=a, answer_1=b, score_0=j.score_a, source=SOURCE,
                id=f"judgement-{j.id}", group=j.shown_question,
                meta={
                    "judgement_id": j.id, "pair_id": j.pair_id, "pair_source": pair_source,
                    "annotator": j.annotator, "shown_at": j.shown_at.isoformat() + "Z",
                    "labelled_at": j.created_at.isoformat() + "Z", "app_version": j.app_version,
                    "shown_swapped": j.shown_swapped,
                    "supported_0": j.a_supported, "plausible_0": j.a_plausible, "harmful_0": j.a_harmful,
                    "supported_1": j.b_supported, "plausible_1": j.b_plausible, "harmful_1": j.b_harmful,
                    "reason": j.reason,
                    # Sparrow's per-rule labels: the ids of the rules each answer breaks (citeagent/safety/rules.toml)
                    "rules_0": broken.get((j.id, "a"), []), "rules_1": broken.get((j.id, "b"), []),
                },
            ))
    return out


def _features():
    from datasets import Features, Sequence, Value

    quotes = {"title": Sequence(Value("string")), "extract": Sequence(Value("string"))}
    return Features({
        "question": {"dataset": Value("string"), "id": Value("string"), "full_text": Value("string")},
        "quotes_0": quotes, "answer_0": Value("string"), "tokens_0": Sequence(Value("int64")), "score_0": Value("float64"),
        "quotes_1": quotes, "answer_1": Value("string"), "tokens_1": Sequence(Value("int64")), "score_1": Value("float64"),
        "meta": Value("string"),  # JSON text: its keys vary, and an Arrow struct cannot
    })


def export_judgements(engine: Engine, out: str | Path, fmt: str = "auto") -> int:
    """Write every judgement to `out` (`.jsonl` -> JSONL, otherwise a datasets directory)."""
    out = Path(out)
    if fmt == "auto":
        fmt = "jsonl" if out.suffix in (".jsonl", ".json") else "dataset"
    if fmt not in ("jsonl", "dataset"):
        raise ValueError(f"--format must be jsonl or dataset (got {fmt!r})")
    rows = [to_webgpt_row(c) for c in judgement_comparisons(engine)]
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "jsonl":
        fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                for r in rows:
                    f.write(json.dumps(r, ensure_ascii=False) + "\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, out)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    else:
        from datasets import Dataset

        ds = Dataset.from_list([{**r, "meta": json.dumps(r["meta"], ensure_ascii=False)} for r in rows], features=_features())
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        try:
            ds.save_to_disk(str(tmp / "data"))
            if out.exists():
                shutil.rmtree(out)
            os.replace(tmp / "data", out)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return len(rows)
