"""Adapters: every source of preferences, read into `Comparison`s.

Source names (combine with commas, e.g. `hh-rlhf,lfqa,hotpotqa-synth`):

- `webgpt` / `openai/webgpt_comparisons`: the WebGPT comparisons, by name through `datasets`.
- a path: a `.jsonl` file or a `datasets` directory in that schema, e.g. the labelling app's export.
- `hh-rlhf[:split+split]`: Anthropic HH-RLHF from the shared data (default harmless-base+helpful-base).
- `lfqa`: the expert pairwise preferences between long-form answers (Xu et al. 2023).
- `hotpotqa-synth[:N]`: two sampled answers per HotpotQA training question (the first N of them)
  labelled by the gold judge; never the held-out evaluation questions.
- `hotpotqa-gold:PATH`: a policy's sampled answers (JSONL) labelled by the gold judge.

Files a user supplies are checked strictly: a malformed row, a duplicate or a pair of identical
answers stops the load with the row number. Public data sets cannot be fixed by the user, so their
bad rows are dropped and counted in `LoadStats` instead.
"""
from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from pathlib import Path

from citeagent.answer import Answer, Quote
from citeagent.reward.schema import Comparison, DataError, answer_key, answers_identical, check_comparison, from_webgpt_row
from citeenv.jsonl import JsonlError, iter_jsonl

HH_SPLITS = ("harmless-base", "helpful-base", "helpful-online", "helpful-rejection-sampled")
HH_DEFAULT = ("harmless-base", "helpful-base")
WEBGPT_NAMES = ("webgpt", "openai/webgpt_comparisons")


@dataclass
class LoadStats:
    source: str
    rows: int = 0
    kept: int = 0
    dropped: dict = field(default_factory=dict)  # reason -> count

    def drop(self, reason: str, count: int = 1) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + count


def load_source(spec: str, strict: bool | None = None) -> tuple[list[Comparison], LoadStats]:
    """Read one source (see the module doc) into comparisons."""
    spec = spec.strip()
    name, _, arg = spec.partition(":")
    if spec in WEBGPT_NAMES:
        return _load_webgpt_hub()
    if name == "hh-rlhf":
        return load_hh_rlhf(arg.split("+") if arg else list(HH_DEFAULT))
    if name == "lfqa":
        return load_lfqa()
    if name == "hotpotqa-synth":
        from citeagent.eval.datasets import hotpotqa_split
        from citeagent.reward.gold_judge import read_hotpot_records, synthetic_comparisons

        # Training questions only: the held-out ones are what `citeagent eval` tests best-of-n and
        # PPO on, and pairs built from their gold answers would let the model score them from memory.
        train = hotpotqa_split(read_hotpot_records())[0]
        comps = synthetic_comparisons(train[:int(arg)] if arg else train)
        return _finish(comps, LoadStats("hotpotqa-synth", rows=len(comps)), strict=False)
    if name == "hotpotqa-gold":
        from citeagent.reward.gold_judge import gold_comparisons_from_answers, read_hotpot_records

        if not arg:
            raise ValueError("hotpotqa-gold needs the policy's answers: hotpotqa-gold:PATH.jsonl")
        comps = gold_comparisons_from_answers(read_policy_answers(Path(arg)), read_hotpot_records(), where=arg)
        return _finish(comps, LoadStats("hotpotqa-gold", rows=len(comps)), strict=True)
    path = Path(spec)
    if path.exists():
        return load_webgpt_file(path, strict=True if strict is None else strict)
    raise ValueError(
        f"Unknown preference source {spec!r}. Use webgpt, hh-rlhf[:split+split], lfqa, hotpotqa-synth, "
        "hotpotqa-gold:PATH, or the path of a JSONL file / datasets directory in the webgpt_comparisons schema."
    )


def load_sources(specs: str, exclude_questions: str = "") -> dict[str, tuple[list[Comparison], LoadStats]]:
    """Every source of a comma-separated spec. `exclude_questions`: a JSONL data set whose
    questions are reserved for a test; every pair about one of them is dropped and counted."""
    from citeagent.eval.datasets import question_key

    excluded = excluded_questions(exclude_questions) if exclude_questions else set()
    out = {}
    for spec in [s for s in specs.split(",") if s.strip()]:
        comps, stats = load_source(spec)
        if excluded:
            kept = [c for c in comps if question_key(c.question) not in excluded]
            if len(kept) < len(comps):
                stats.drop("about an excluded question", len(comps) - len(kept))
                stats.kept = len(kept)
            comps = kept
        out[stats.source] = (comps, stats)
    if not out:
        raise ValueError("No preference source given. Example: --data hh-rlhf,lfqa,hotpotqa-synth")
    return out


def excluded_questions(path: str) -> set[str]:
    """The questions of a JSONL data set, read before any source so that a bad path stops at once."""
    from citeagent.eval.datasets import DatasetError, load_jsonl_dataset, question_key

    try:
        ds = load_jsonl_dataset(path)
    except DatasetError as e:
        raise ValueError(f"--exclude-questions: {e} Give a data set that `citeagent eval --dataset` reads: "
                         "JSONL with a \"question\" and its \"answers\" (a list) on every line.") from None
    return {question_key(e.question) for e in ds.examples}


# --- webgpt_comparisons schema: the hub data set, local files, the labelling app's export ----------


def load_webgpt_rows(rows, source: str, strict: bool) -> tuple[list[Comparison], LoadStats]:
    """Parse rows of the webgpt_comparisons schema. `rows` yields (where, row)."""
    stats = LoadStats(source)
    comps = []
    for where, row in rows:
        stats.rows += 1
        try:
            comps.append((where, from_webgpt_row(row, where, source=source)))
        except DataError as e:
            if strict:
                raise
            stats.drop("identical answers" if "identical" in str(e) else "malformed")
    return _finish(comps, stats, strict)


def load_webgpt_file(path: str | Path, strict: bool = True) -> tuple[list[Comparison], LoadStats]:
    path = Path(path)
    source = path.stem if path.is_file() else path.name
    if path.is_dir():
        import datasets

        try:
            ds = datasets.load_from_disk(str(path))
        except FileNotFoundError as e:
            raise DataError(f"{path} is not a datasets directory (save_to_disk output): {e}") from e
        if isinstance(ds, datasets.DatasetDict):
            ds = ds["train"] if "train" in ds else next(iter(ds.values()))
        rows = ((f"{path} row {i + 1}", row) for i, row in enumerate(ds))
    else:
        rows = jsonl_rows(path)
    return load_webgpt_rows(rows, source, strict)


def jsonl_rows(path: Path):
    try:
        for i, row in iter_jsonl(path):
            yield f"{path} line {i}", row
    except JsonlError as e:
        raise DataError(str(e)) from None


def _load_webgpt_hub() -> tuple[list[Comparison], LoadStats]:
    import datasets

    try:
        ds = datasets.load_dataset("openai/webgpt_comparisons", split="train")
    except Exception as e:  # offline, or the hub refuses: say what to do instead
        raise RuntimeError(
            "Could not load openai/webgpt_comparisons from the Hugging Face hub "
            f"({type(e).__name__}: {str(e)[:200]}). Connect to the hub, or pass the path of a local copy "
            "(JSONL or datasets directory) in the same schema."
        ) from e
    return load_webgpt_rows(((f"webgpt row {i + 1}", r) for i, r in enumerate(ds)), "webgpt", strict=False)


# --- Anthropic HH-RLHF ------------------------------------------------------------------------------

_ASSISTANT = "\n\nAssistant:"


def split_dialogue(text: str) -> tuple[str, str]:
    """(the dialogue up to the last assistant turn, that turn's response)."""
    i = text.rfind(_ASSISTANT)
    if i < 0:
        return "", text.strip()
    return text[:i].strip(), text[i + len(_ASSISTANT):].strip()


def load_hh_rlhf(splits: list[str]) -> tuple[list[Comparison], LoadStats]:
    from citeenv.paths import shared_data_dir

    bad = [s for s in splits if s not in HH_SPLITS]
    if bad:
        raise ValueError(f"Unknown HH-RLHF split(s) {bad}; choose from {', '.join(HH_SPLITS)} (join with +).")
    stats = LoadStats("hh-rlhf")
    comps = []
    for split in splits:
        path = shared_data_dir() / "hh-rlhf" / split / "test_shared.jsonl.gz"
        for where, row in jsonl_rows(path):
            stats.rows += 1
            if not isinstance(row.get("chosen"), str) or not isinstance(row.get("rejected"), str):
                stats.drop("malformed")
                continue
            prompt, chosen = split_dialogue(row["chosen"])
            prompt_r, rejected = split_dialogue(row["rejected"])
            if prompt != prompt_r:  # the two dialogues diverge before the last turn: not one question
                stats.drop("different dialogues")
                continue
            # HH-RLHF has no quotes: the dialogue is the question and the last turn the answer.
            comps.append(Comparison(
                question=prompt, answer_0=Answer(prompt, chosen), answer_1=Answer(prompt, rejected), score_0=1.0,
                source="hh-rlhf", id=f"{split}:{where.rsplit(' ', 1)[-1]}", group=prompt, meta={"split": split},
            ))
    return _finish(comps, stats, strict=False)


# --- expert pairwise preferences on long-form answers (Xu et al. 2023) -------------------------------


def _lfqa_text(text: str) -> str:
    return (text or "").replace("<br />", "\n").replace("<br/>", "\n").replace("<br>", "\n").strip()


def _lfqa_docs(doc) -> list[Quote]:
    """Documents shown with an answer become its quotes (a string, a list of strings or of objects)."""
    if not doc:
        return []
    items = doc if isinstance(doc, list) else [doc]
    quotes = []
    for i, d in enumerate(items, start=1):
        if isinstance(d, dict):
            quotes.append(Quote(n=i, title=str(d.get("title") or "document"), url=str(d.get("url") or ""),
                                text=str(d.get("text") or d.get("extract") or "")))
        else:
            quotes.append(Quote(n=i, title="document", url="", text=str(d)))
    return [q for q in quotes if q.text.strip()]


def load_lfqa() -> tuple[list[Comparison], LoadStats]:
    from citeenv.paths import shared_data_dir

    path = shared_data_dir() / "lfqa-human-prefs" / "experts_pairwise_shared.jsonl"
    stats = LoadStats("lfqa")
    comps = []
    for where, row in jsonl_rows(path):
        stats.rows += 1
        pref = row.get("overall_preference")
        if pref not in (-1, 0, 1) or not row.get("question") or not row.get("answer_a") or not row.get("answer_b"):
            stats.drop("malformed")
            continue
        q = str(row["question"]).strip()
        a = Answer(q, _lfqa_text(row["answer_a"]), _lfqa_docs(row.get("doc_a")))
        b = Answer(q, _lfqa_text(row["answer_b"]), _lfqa_docs(row.get("doc_b")))
        # overall_preference -1 means answer A is better (checked against the experts' justifications)
        comps.append(Comparison(question=q, answer_0=a, answer_1=b, score_0=-float(pref), source="lfqa",
                                id=where.rsplit(" ", 1)[-1], group=q,
                                meta={"types": [row.get("answer_a_type"), row.get("answer_b_type")]}))
    return _finish(comps, stats, strict=False)


# --- policy outputs ---------------------------------------------------------------------------------


def parse_policy_answer(row, where: str) -> Answer:
    """One sampled answer: an Answer dict, or {"question", "answer": {Answer dict}} as eval writes."""
    if isinstance(row, dict) and isinstance(row.get("answer"), dict):
        row = {"question": row.get("question", row["answer"].get("question")), **row["answer"]}
    try:
        ans = Answer.from_dict(row)
    except (ValueError, TypeError) as e:
        raise DataError(f"{where}: {e}") from e
    if not ans.question.strip():
        raise DataError(f"{where}: the question is empty.")
    return ans


def read_policy_answers(path: str | Path) -> dict[str, list[Answer]]:
    """Sampled answers grouped by question, identical samples merged (they make no comparison)."""
    by_question: dict[str, list[Answer]] = {}
    for where, row in jsonl_rows(Path(path)):
        ans = parse_policy_answer(row, where)
        group = by_question.setdefault(ans.question.strip(), [])
        if not any(answers_identical(ans, other) for other in group):
            group.append(ans)
    return by_question


# --- checks shared by every source, and the held-out split -------------------------------------------


def _dedupe_key(c: Comparison) -> tuple:
    # The same judgement may come back with its answers swapped; orient it before comparing.
    flipped = answer_key(c.answer_0) > answer_key(c.answer_1)
    return (c.content_key(), c.id, -c.score_0 if flipped else c.score_0)


def _finish(comps: list, stats: LoadStats, strict: bool) -> tuple[list[Comparison], LoadStats]:
    """Check every comparison and drop repeats. `comps` holds comparisons or (where, comparison)."""
    seen: dict[tuple, str] = {}
    out = []
    for item in comps:
        where, c = item if isinstance(item, tuple) else (f"{stats.source} comparison {item.id or len(out) + 1}", item)
        try:
            check_comparison(c, where)
        except DataError:
            if strict:
                raise
            stats.drop("identical answers" if answers_identical(c.answer_0, c.answer_1) else "malformed")
            continue
        key = _dedupe_key(c)
        if key in seen:
            if strict:
                raise DataError(
                    f"{where} duplicates {seen[key]} (same question, answers, score and id). "
                    "Export again or remove the repeated row; a judgement must be counted once."
                )
            stats.drop("duplicate")
            continue
        seen[key] = where
        out.append(c)
    stats.kept = len(out)
    return out, stats


def heldout_fraction_key(c: Comparison, seed: int = 0) -> float:
    h = hashlib.sha256(f"{seed}:{c.split_key()}".encode()).hexdigest()
    return int(h[:12], 16) / float(16**12)


def split_heldout(comps: list[Comparison], frac: float, seed: int = 0) -> tuple[list[Comparison], list[Comparison]]:
    """Deterministic train / held-out split by question: every comparison of one question lands on
    the same side, so held-out accuracy is measured on questions the model never trained on."""
    if not 0.0 <= frac < 1.0:
        raise ValueError(f"the held-out fraction must be in [0, 1) (got {frac})")
    train, held = [], []
    for c in comps:
        (held if heldout_fraction_key(c, seed) < frac else train).append(c)
    return train, held


def subsample(comps: list[Comparison], n: int | None, seed: int = 0) -> list[Comparison]:
    if n is None or n >= len(comps):
        return list(comps)
    rng = random.Random(seed)
    return rng.sample(comps, n)
