"""HotpotQA (distractor setting): questions with 10 Wikipedia paragraphs each, as corpora.

Two corpora:
- pooled (`hotpotqa`): every paragraph of every question, deduplicated by title;
- per question (`hotpotqa:<_id>`): that question's 10 paragraphs.

A paragraph becomes a Document with id = title, url = its Wikipedia address, text = the
sentences joined as published (each sentence after the first carries its own leading space),
and meta["sentences"] = [[start, end], ...], the offsets of each sentence in the text, so that a
quote can be mapped back to HotpotQA's (title, sent_id) supporting facts.

Records come in two schemas, normalised to the official one by `read_hotpotqa_records`:
official  context [[title, [sentences]]], supporting_facts [[title, sent_id]], `_id`
hub       context {title: [...], sentences: [[...]]}, supporting_facts {title: [...], sent_id: [...]}, `id`
Malformed records fail with their line number: evaluation data is never skipped silently.
"""
from __future__ import annotations

import copy
import functools
import gzip
import json
import logging
from collections.abc import Iterator
from pathlib import Path

from citeenv.corpus import DEFAULT_CHUNK_CHARS, Corpus, CorpusError
from citeenv.documents import Document
from citeenv.paths import shared_data_dir

log = logging.getLogger(__name__)

SHARED_FILE = "hotpotqa/hotpot_dev_distractor_shared.jsonl.gz"
HUB_NAME = "hotpotqa/hotpot_qa"
HUB_CONFIG = "distractor"
FIELDS = ("_id", "question", "answer", "type", "level", "supporting_facts", "context")


def default_source() -> Path:
    return shared_data_dir() / SHARED_FILE


def read_hotpotqa_records(source: str | Path | None = None, split: str = "validation",
                          limit: int | None = None) -> Iterator[dict]:
    """HotpotQA records in the official schema (_id, question, answer, type, level,
    supporting_facts [[title, sent_id]], context [[title, [sentences]]]).

    source: None = the shared dev file; a .json/.jsonl(.gz) file in either schema; a .parquet or
    .arrow file, or a dataset directory, read with `datasets` (split names the split); anything
    else is a Hugging Face hub name (e.g. "hotpotqa/hotpot_qa", config "distractor")."""
    if limit is not None and limit <= 0:
        return
    rows = _raw_rows(source, split)
    for n, (where, row) in enumerate(rows):
        if limit is not None and n >= limit:
            break
        yield normalize_hotpotqa_record(row, where)


def normalize_hotpotqa_record(row: dict, where: str = "record") -> dict:
    """One record in either schema -> the official schema. Raises CorpusError naming `where`."""
    if not isinstance(row, dict):
        raise CorpusError(f"{where}: a HotpotQA record must be a JSON object, got {type(row).__name__}")
    try:
        context = row["context"]
        if isinstance(context, dict):  # hub schema: columns of parallel lists
            context = [[t, list(s)] for t, s in zip(context["title"], context["sentences"])]
        facts = row.get("supporting_facts") or []
        if isinstance(facts, dict):
            facts = [[t, int(i)] for t, i in zip(facts["title"], facts["sent_id"])]
        record = {
            "_id": str(row["_id"] if "_id" in row else row["id"]),
            "question": str(row["question"]),
            "answer": str(row.get("answer") or ""),
            "type": str(row.get("type") or ""),
            "level": str(row.get("level") or ""),
            "supporting_facts": [[str(t), int(i)] for t, i in facts],
            "context": [[str(t), [str(s) for s in sents]] for t, sents in context],
        }
    except (KeyError, TypeError, ValueError) as e:
        raise CorpusError(f"{where}: not a HotpotQA record ({type(e).__name__}: {e}). Expected the fields "
                          f"{', '.join(FIELDS)} in the official or the Hugging Face schema.") from None
    return record


def _raw_rows(source, split) -> Iterator[tuple[str, dict]]:
    if source is None:
        source = default_source()
    path = Path(source)
    if path.is_file() and _is_json_file(path):
        yield from _json_rows(path)
        return
    from citeenv.sources.hf import load_hf_dataset, looks_like_path

    if not path.exists() and (isinstance(source, Path) or looks_like_path(str(source))):
        raise CorpusError(f"No such HotpotQA file: {path}")

    name = str(source)
    config = HUB_CONFIG if name in (HUB_NAME, "hotpot_qa") else None
    dataset = load_hf_dataset(name, split=split, config=config)
    for i, row in enumerate(dataset):
        yield f"{name} ({split}) row {i}", row


def _is_json_file(path: Path) -> bool:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    return bool(suffixes) and suffixes[-1] in (".json", ".jsonl")


def _json_rows(path: Path) -> Iterator[tuple[str, dict]]:
    """A JSON array (the official release files) or JSON lines, optionally gzipped."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8", errors="replace") as f:
            head = f.read(1)
            while head and head.isspace():
                head = f.read(1)
            if head == "[":
                f.seek(0)
                for i, row in enumerate(json.load(f)):
                    yield f"{path}, record {i}", row
                return
            f.seek(0)
            for lineno, line in enumerate(f, start=1):
                if line.strip():
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError as e:
                        raise CorpusError(f"{path}, line {lineno}: not valid JSON ({e.msg}).") from None
                    yield f"{path}, line {lineno}", row
    except (OSError, EOFError) as e:
        raise CorpusError(f"Could not read {path}: {e}") from None
    except json.JSONDecodeError as e:
        raise CorpusError(f"{path}: not valid JSON ({e.msg} at line {e.lineno}).") from None


# --- corpora ---------------------------------------------------------------------------------

def wikipedia_url(title: str) -> str:
    # Only the characters that would break a url are escaped; the rest stays readable.
    path = title.replace(" ", "_").replace("%", "%25").replace("?", "%3F").replace("#", "%23").replace('"', "%22")
    return f"https://en.wikipedia.org/wiki/{path}"


def paragraph_document(title: str, sentences: list[str]) -> Document:
    spans, pos = [], 0
    for s in sentences:
        spans.append([pos, pos + len(s)])
        pos += len(s)
    return Document(id=title, title=title, url=wikipedia_url(title), text="".join(sentences),
                    meta={"sentences": spans})


def question_corpus(record: dict, chunk_chars: int = DEFAULT_CHUNK_CHARS) -> Corpus:
    """The 10 paragraphs of one (official-schema) record as a corpus named hotpotqa:<_id>."""
    docs, seen = [], set()
    for title, sentences in record["context"]:
        if title not in seen:  # a title twice in one question would break unique ids
            seen.add(title)
            docs.append(paragraph_document(title, sentences))
    return Corpus(docs, name=f"hotpotqa:{record['_id']}", chunk_chars=chunk_chars)


def pooled_corpus(source: str | Path | None = None, split: str = "validation", limit: int | None = None,
                  chunk_chars: int = DEFAULT_CHUNK_CHARS) -> Corpus:
    """All paragraphs of all questions, the first copy of each title kept."""
    docs: dict[str, Document] = {}
    differing = 0
    for record in read_hotpotqa_records(source, split, limit):
        for title, sentences in record["context"]:
            if title not in docs:
                docs[title] = paragraph_document(title, sentences)
            elif docs[title].text != "".join(sentences):
                differing += 1
    if differing:
        log.info("hotpotqa: %d paragraph(s) shared a title with different text; the first copy was kept.", differing)
    if not docs:
        raise CorpusError(f"No HotpotQA paragraphs in {source or default_source()}.")
    return Corpus(list(docs.values()), name="hotpotqa", chunk_chars=chunk_chars)


def find_record(question_id: str, source: str | Path | None = None, split: str = "validation") -> dict:
    if source is None or (Path(source).is_file() and _is_json_file(Path(source))):
        path = Path(source) if source is not None else default_source()
        record = _records_by_id(str(path), path.stat().st_mtime).get(question_id)
    else:
        record = next((r for r in read_hotpotqa_records(source, split) if r["_id"] == question_id), None)
    if record is None:
        raise CorpusError(f"No HotpotQA question with _id {question_id!r} in {source or default_source()}. "
                          "Use an _id from the file, e.g. `hotpotqa:5a8b57f25542995d1e6f1371`.")
    return copy.deepcopy(record)  # the cached copy must not change under the caller


@functools.lru_cache(maxsize=4)
def _records_by_id(path: str, mtime: float) -> dict[str, dict]:
    # Evaluation opens hundreds of per-question corpora from one file; parse it once.
    return {r["_id"]: r for r in read_hotpotqa_records(path)}
