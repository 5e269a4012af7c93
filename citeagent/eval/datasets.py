"""Evaluation data sets: each loads into a list of `EvalExample` (question, accepted answers,
optional gold evidence) and names the corpus that holds its evidence.

| name | corpus | gold evidence |
| --- | --- | --- |
| hotpotqa | all paragraphs of the shared split, pooled | supporting sentences |
| hotpotqa-distractor | each question's own 10 paragraphs | supporting sentences |
| hotpotqa-distractor:SOURCE | the same, for another HotpotQA source, less the shared split's questions | supporting sentences |
| nq-open, efficientqa | none here: --corpus or --web | - |
| asqa | none here: --corpus or --web | - (short answers per interpretation) |
| fever | none here: --corpus or --web | evidence sentences (page, sentence id) |
| pydocs | pydocs | supporting pages (urls) |
| redteam | corpora/redteam_pages.jsonl | - (adversarial: scored for rule violations, harm and declining) |
| PATH.jsonl | --corpus, or each line's "corpus" | optional |
"""
from __future__ import annotations

import functools
import gzip
import hashlib
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote as url_quote

from citeenv.documents import normalize_ws
from citeenv.jsonl import JsonlRead, iter_jsonl
from citeenv.paths import shared_data_dir

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
PYDOCS_QA = REPO / "corpora" / "pydocs_qa.jsonl"


class DatasetError(ValueError):
    """A data set that cannot be loaded; the message says why and what to do."""


@dataclass
class EvalExample:
    id: str
    question: str
    answers: list[str]  # accepted answers; any one is correct
    answer_groups: list[list[str]] | None = None  # ASQA: accepted short answers per interpretation
    gold_sentences: list[tuple[str, int]] | None = None  # (page title, sentence id)
    gold_urls: list[str] | None = None  # pages that support the answer
    corpus: str | None = None  # this question's own corpus (per-question settings)
    meta: dict = field(default_factory=dict)


@dataclass
class EvalDataset:
    name: str
    examples: list[EvalExample]
    corpus: str | None  # the corpus spec the questions are asked against; None: the user names one
    description: str = ""
    skipped: list[str] = field(default_factory=list)  # why input lines were left out

    @property
    def per_question_corpus(self) -> bool:
        return any(e.corpus for e in self.examples)


def _open_text(path: Path):
    return gzip.open(path, "rt", encoding="utf-8") if str(path).endswith(".gz") else open(path, encoding="utf-8", errors="replace")


def _data_file(*parts: str) -> Path:
    path = shared_data_dir().joinpath(*parts)
    if not path.is_file():
        raise DatasetError(f"{path} is missing; the shared data folder should hold it (see its README.md).")
    return path


# --- HotpotQA ------------------------------------------------------------------------------

# The first 30% of the HotpotQA dev file (266 of the shared split's 886 questions) is held out: it
# is what `citeagent eval --dataset hotpotqa` scores. Everything that learns from HotpotQA (the
# support judge, demonstrations, reward-model pairs, PPO rollouts) uses only the rest.
HOTPOTQA_HELDOUT_FRACTION = 0.3


def hotpotqa_split(records: list[dict], heldout_fraction: float = HOTPOTQA_HELDOUT_FRACTION
                   ) -> tuple[list[dict], list[dict]]:
    """(train, heldout) HotpotQA records by file order; heldout = the first `heldout_fraction`."""
    k = math.ceil(len(records) * heldout_fraction)
    return records[k:], records[:k]


def question_key(question: str) -> str:
    """What two data sets' questions are matched by: whitespace collapsed, case ignored."""
    return normalize_ws(question).lower()


def hotpot_question_id(rec: dict) -> str:
    """HotpotQA's `_id`. 35 records of the shared split have none (null), and ids must be unique
    for resuming and pairing runs, so those get one made from their question."""
    qid = str(rec.get("_id") or "")
    if qid and qid != "None":
        return qid
    return "hotpot-" + hashlib.sha1(rec["question"].encode("utf-8")).hexdigest()[:16]


def hotpot_example(rec: dict, per_question: bool) -> EvalExample:
    qid = hotpot_question_id(rec)
    meta = {"type": rec.get("type"), "level": rec.get("level")}
    if per_question:
        # The question's own paragraphs travel with it: `hotpotqa:<_id>` cannot find a record
        # whose _id is null.
        meta["paragraphs"] = rec["context"]
    return EvalExample(
        id=qid,
        question=rec["question"],
        answers=[rec["answer"]],
        gold_sentences=[(str(t), int(s)) for t, s in rec.get("supporting_facts") or []],
        corpus=f"hotpotqa:{qid}" if per_question else None,
        meta=meta,
    )


def example_corpus(example: EvalExample):
    """The per-question corpus of an example (its own paragraphs when it carries them)."""
    if example.meta.get("paragraphs") is not None:
        from citeenv.sources.hotpotqa import question_corpus

        return question_corpus({"_id": example.id, "context": example.meta["paragraphs"]})
    from citeenv.sources import load_corpus

    return load_corpus(example.corpus)


def load_hotpotqa(per_question: bool = False, limit: int | None = None) -> EvalDataset:
    from citeenv.sources.hotpotqa import read_hotpotqa_records

    examples = [hotpot_example(r, per_question) for r in read_hotpotqa_records(limit=limit)]
    if per_question:
        return EvalDataset("hotpotqa-distractor", examples, None, "HotpotQA dev distractor, each question over its own 10 paragraphs")
    return EvalDataset("hotpotqa", examples, "hotpotqa", "HotpotQA dev distractor, all paragraphs of the shared split pooled")


def load_hotpotqa_source(source: str, limit: int | None = None) -> EvalDataset:
    """`hotpotqa-distractor:SOURCE`: the questions of another HotpotQA source (the full dev set by
    hub name `hotpotqa/hotpot_qa`, the official release file, a parquet file or dataset directory),
    each over its own 10 paragraphs, in file order. Every question of the shared split is left out,
    held-out ones too: the project's demonstrations, reward models and PPO learned from its
    training part and chose configurations on its held-out part, so these are test questions
    that nothing here has seen."""
    from citeenv.corpus import CorpusError
    from citeenv.sources.hotpotqa import read_hotpotqa_records

    if not source.strip():
        raise DatasetError("hotpotqa-distractor: names no source; use e.g. hotpotqa-distractor:hotpotqa/hotpot_qa "
                           "or hotpotqa-distractor:path/to/hotpot_dev_distractor_v1.json")
    try:
        shared = list(read_hotpotqa_records())
    except FileNotFoundError as e:
        raise DatasetError(f"hotpotqa-distractor:{source} leaves out the shared split's questions, but the shared "
                           f"data cannot be read ({e})") from None
    seen_ids = {hotpot_question_id(r) for r in shared}
    seen_questions = {question_key(r["question"]) for r in shared}
    examples, excluded = [], 0
    try:
        for rec in read_hotpotqa_records(source):
            if limit is not None and len(examples) >= limit:
                break
            if hotpot_question_id(rec) in seen_ids or question_key(rec["question"]) in seen_questions:
                excluded += 1
                continue
            examples.append(hotpot_example(rec, per_question=True))
    except CorpusError as e:
        raise DatasetError(f"hotpotqa-distractor:{source}: {e}") from None
    if not examples:
        raise DatasetError(f"hotpotqa-distractor:{source} holds no question outside the shared split "
                           f"({excluded} left out as shared).")
    return EvalDataset(f"hotpotqa-distractor:{source}", examples, None,
                       f"HotpotQA distractor questions from {source}, each over its own 10 paragraphs; {excluded} "
                       f"question(s) of the shared split left out")


# --- NQ-open / EfficientQA -----------------------------------------------------------------

NQ_FILES = {
    "nq-open": "NQ-open.dev.jsonl",
    "efficientqa": "NQ-open.efficientqa.dev.1.1.jsonl",
}


def _skipped_lines(path: Path, skipped: list[tuple[int, str]], read: JsonlRead) -> list[str]:
    """Why each left-out line went, in line order: the loader's reasons and the unreadable lines."""
    return [f"{path.name} line {ln}: {why}" for ln, why in sorted(skipped + read.bad_lines)]


def load_nq_open(name: str = "nq-open", limit: int | None = None) -> EvalDataset:
    path = _data_file("nq-open", NQ_FILES[name])
    examples, skipped, read = [], [], JsonlRead(str(path))
    for ln, rec in iter_jsonl(path, bad="skip", read=read):
        if limit is not None and len(examples) >= limit:
            break
        try:
            answers = rec["answer"]
            if isinstance(answers, str):
                answers = [answers]
            examples.append(EvalExample(id=f"{name}-{ln}", question=rec["question"], answers=[str(a) for a in answers]))
        except (ValueError, KeyError, TypeError) as e:
            skipped.append((ln, str(e)))
    skipped = _skipped_lines(path, skipped, read)
    return EvalDataset(name, examples, None, f"{name} ({path.name}): question and accepted short answers", skipped)


# --- ASQA ----------------------------------------------------------------------------------

def load_asqa(limit: int | None = None) -> EvalDataset:
    path = _data_file("asqa", "asqa_dev.json.gz")
    with _open_text(path) as f:
        data = json.load(f)
    records = data.values() if isinstance(data, dict) else data
    examples = []
    for rec in records:
        if limit is not None and len(examples) >= limit:
            break
        groups = [[str(a) for a in qa.get("short_answers") or []] for qa in rec.get("qa_pairs") or []]
        groups = [g for g in groups if g]
        examples.append(
            EvalExample(
                id=str(rec.get("id") or rec.get("sample_id")),
                question=rec.get("question") or rec.get("ambiguous_question"),
                answers=[a for g in groups for a in g],
                answer_groups=groups,
                meta={"wikipages": [w.get("url") for w in rec.get("wikipages") or [] if isinstance(w, dict)]},
            )
        )
    return EvalDataset("asqa", examples, None, "ASQA dev (ALCE's questions): short answers per interpretation")


# --- FEVER ---------------------------------------------------------------------------------

FEVER_ANSWERS = {
    "SUPPORTS": ["true", "supports"],
    "REFUTES": ["false", "refutes"],
    "NOT ENOUGH INFO": ["not enough info", "not enough information"],
}
_FEVER_TITLE = {"-LRB-": "(", "-RRB-": ")", "-LSB-": "[", "-RSB-": "]", "-LCB-": "{", "-RCB-": "}", "-COLON-": ":"}


def fever_title(page: str) -> str:
    """FEVER's wiki page id ("Soul_Food_-LRB-film-RRB-") as a page title ("Soul Food (film)")."""
    for k, v in _FEVER_TITLE.items():
        page = page.replace(k, v)
    return page.replace("_", " ")


def fever_question(claim: str) -> str:
    return f"Is this claim true or false, or is there not enough information? Claim: {claim}"


def load_fever(limit: int | None = None) -> EvalDataset:
    path = _data_file("fever", "paper_dev.jsonl.gz")
    examples, skipped, read = [], [], JsonlRead(str(path))
    for ln, rec in iter_jsonl(path, bad="skip", read=read):
        if limit is not None and len(examples) >= limit:
            break
        try:
            label = rec["label"]
            gold = sorted({(fever_title(p), int(s)) for group in rec.get("evidence") or [] for _, _, p, s in group if p is not None})
            examples.append(
                EvalExample(
                    id=str(rec["id"]), question=fever_question(rec["claim"]), answers=list(FEVER_ANSWERS[label]),
                    gold_sentences=gold or None,
                    gold_urls=sorted({"https://en.wikipedia.org/wiki/" + url_quote(t.replace(" ", "_")) for t, _ in gold}) or None,
                    meta={"claim": rec["claim"], "label": label},
                )
            )
        except (ValueError, KeyError, TypeError) as e:
            skipped.append((ln, repr(e)))
    skipped = _skipped_lines(path, skipped, read)
    return EvalDataset("fever", examples, None, "FEVER 1.0 paper_dev claims: label as answer, evidence sentences as gold", skipped)


# --- pydocs QA and any JSONL ---------------------------------------------------------------

def load_pydocs_qa(limit: int | None = None) -> EvalDataset:
    ds = load_jsonl_dataset(PYDOCS_QA, limit=limit, default_corpus="pydocs")
    ds.name = "pydocs"
    ds.description = "The project's Python-documentation QA set (corpora/pydocs_qa.jsonl) over the pydocs corpus"
    return ds


def example_from_dict(d: dict, fallback_id: str) -> EvalExample:
    """One question of a user JSONL. Needs `question` and `answers` (a list) or `answer`; may
    carry `id`, gold evidence as `supporting_facts` ([[title, sentence id]]) and/or
    `urls` / `support_urls` (pages), and its own `corpus`."""
    if not isinstance(d, dict):
        raise ValueError(f"expected a JSON object, got {type(d).__name__}")
    q = d.get("question")
    if not isinstance(q, str) or not q.strip():
        raise ValueError("no 'question' text")
    answers = d.get("answers", d.get("answer"))
    if isinstance(answers, str):
        answers = [answers]
    if not isinstance(answers, list) or not answers:
        raise ValueError("no 'answers' (a non-empty list) or 'answer'")
    sf = d.get("supporting_facts")
    urls = d.get("support_urls", d.get("urls"))
    return EvalExample(
        id=str(d.get("id", d.get("_id", fallback_id))),
        question=q.strip(),
        answers=[str(a) for a in answers],
        gold_sentences=[(str(t), int(s)) for t, s in sf] if sf else None,
        gold_urls=[str(u) for u in urls] if urls else None,
        corpus=d.get("corpus"),
        meta={k: v for k, v in d.items() if k in ("topic", "type", "level", "source")},
    )


def load_jsonl_dataset(path: str | Path, limit: int | None = None, default_corpus: str | None = None) -> EvalDataset:
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"No data set file at {path}.")
    examples, skipped, seen, read = [], [], set(), JsonlRead(str(path))
    for ln, rec in iter_jsonl(path, bad="skip", read=read):
        if limit is not None and len(examples) >= limit:
            break
        try:
            ex = example_from_dict(rec, f"{path.stem}-{ln}")
        except (ValueError, TypeError) as e:
            skipped.append((ln, str(e)))
            continue
        if ex.id in seen:
            skipped.append((ln, f"duplicate id {ex.id!r}"))
            continue
        seen.add(ex.id)
        examples.append(ex)
    skipped = _skipped_lines(path, skipped, read)
    if skipped:
        log.warning("%s: left out %d malformed line(s): %s", path, len(skipped), "; ".join(skipped[:5]))
    if not examples:
        raise DatasetError(f"{path} holds no usable question ({len(skipped)} malformed line(s)).")
    return EvalDataset(path.stem, examples, default_corpus, f"questions from {path}", skipped)


# --- red team ------------------------------------------------------------------------------

REDTEAM_CITING = REPO / "corpora" / "redteam_citing.jsonl"
REDTEAM_PAGES = REPO / "corpora" / "redteam_pages.jsonl"


def first_human_turn(dialogue: str) -> str:
    text = dialogue.strip()
    if text.startswith("Human:"):
        text = text[len("Human:"):]
    return text.split("\n\nAssistant:", 1)[0].strip()


def hh_redteam_prompts(part: str) -> tuple[tuple[str, str], ...]:
    """(id, first human turn) of the HH-RLHF harmless-base dialogues on one side of the harmlessness
    PM's split: "test" (held out from the PM; the red-team evaluation asks these) or "train" (what
    RL may train on). One definition of the split, so the two sides never share a dialogue."""
    return _hh_redteam_split()[part]


@functools.lru_cache(maxsize=1)
def _hh_redteam_split() -> dict[str, tuple[tuple[str, str], ...]]:
    from citeagent.reward.sources import load_hh_rlhf, split_heldout
    from citeagent.train.harmless_pm import HarmlessPMConfig

    pm = HarmlessPMConfig()
    comps, _stats = load_hh_rlhf(pm.splits.split("+"))
    train, test = split_heldout(comps, pm.test_frac, seed=pm.seed)
    return {part: tuple((f"hh-{c.id}", q) for c in sorted(side, key=lambda c: c.id) if (q := first_human_turn(c.question)))
            for part, side in (("train", train), ("test", test))}


def load_redteam(limit: int | None = None) -> EvalDataset:
    """Adversarial questions: the hand-written set that targets citing (asking the agent to quote
    harm, private data or hoaxes from a page; corpora/redteam_citing.jsonl), then the first human
    turns of HH-RLHF harmless-base, which are red-team attempts (Ganguli et al. 2022). Only the
    dialogues the harmlessness preference model held out for its test are used, so its scores of
    the agent's answers are on prompts it never trained on. No gold answers: the run is scored for
    rule violations, harmlessness and declining (`safety` metrics). The questions are asked against
    corpora/redteam_pages.jsonl, a small corpus of hostile and benign pages."""
    examples, seen = [], set()
    for ln, row in iter_jsonl(REDTEAM_CITING):
        examples.append(EvalExample(id=str(row.get("id", f"cite-{ln}")), question=row["question"], answers=[],
                                    meta={"source": "citing"}))
        seen.add(question_key(row["question"]))
    for id_, q in hh_redteam_prompts("test"):
        if question_key(q) not in seen:
            seen.add(question_key(q))
            examples.append(EvalExample(id=id_, question=q, answers=[], meta={"source": "hh-rlhf"}))
    examples = examples[:limit] if limit is not None else examples
    return EvalDataset("redteam", examples, str(REDTEAM_PAGES),
                       "red-team questions: hand-written citing attacks, then HH-RLHF harmless-base first turns "
                       "(the preference model's test dialogues)")


def redteam_training_questions() -> list[dict]:
    """Red-team prompts RL may train on: first turns of the harmlessness PM's training dialogues,
    without any whose text is also a red-team evaluation question. Gold-question records with no
    answers and no support; their reward is the harmlessness PM's and the rule classifier's."""
    held = {question_key(e.question) for e in load_redteam().examples}
    out, seen = [], set()
    for id_, q in hh_redteam_prompts("train"):
        key = question_key(q)
        if key not in held and key not in seen:
            seen.add(key)
            out.append({"id": id_, "question": q, "answers": [], "support": [], "redteam": True})
    return out


HOTPOTQA_SOURCE_PREFIX = "hotpotqa-distractor:"
DATASETS = {
    "hotpotqa": lambda limit: load_hotpotqa(per_question=False, limit=limit),
    "hotpotqa-distractor": lambda limit: load_hotpotqa(per_question=True, limit=limit),
    "nq-open": lambda limit: load_nq_open("nq-open", limit),
    "efficientqa": lambda limit: load_nq_open("efficientqa", limit),
    "asqa": load_asqa,
    "fever": load_fever,
    "pydocs": load_pydocs_qa,
    "redteam": load_redteam,
}


def load_dataset(name_or_path: str, limit: int | None = None, corpus: str | None = None) -> EvalDataset:
    """A named data set or a JSONL path; `corpus` overrides the corpus the questions are asked
    against (the named corpus of a data set that has none here)."""
    if name_or_path in DATASETS:
        ds = DATASETS[name_or_path](limit)
    elif name_or_path.startswith(HOTPOTQA_SOURCE_PREFIX):
        ds = load_hotpotqa_source(name_or_path[len(HOTPOTQA_SOURCE_PREFIX):], limit=limit)
    elif Path(name_or_path).exists() or name_or_path.endswith((".jsonl", ".jsonl.gz")):
        ds = load_jsonl_dataset(name_or_path, limit=limit)
    else:
        raise DatasetError(f"Unknown data set {name_or_path!r}: use one of {', '.join(DATASETS)}, "
                           f"{HOTPOTQA_SOURCE_PREFIX}SOURCE or a JSONL path.")
    if corpus:
        ds.corpus = corpus
        for e in ds.examples:
            e.corpus = None
    return ds
