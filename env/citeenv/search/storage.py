"""What every saved searcher directory holds besides its index: searcher.json (kind and
settings) and rows.jsonl (the passage and document id of each index row, one per line)."""
from __future__ import annotations

import json
from pathlib import Path

from citeenv.corpus import CorpusError


def write_meta(directory: Path, kind: str, **fields) -> None:
    text = json.dumps({"kind": kind, **fields}, indent=2, ensure_ascii=False)
    (Path(directory) / "searcher.json").write_text(text + "\n", encoding="utf-8")


def read_meta(directory: Path, kind: str | None = None) -> dict:
    """searcher.json of a saved searcher; kind=None accepts any kind."""
    directory = Path(directory)
    path = directory / "searcher.json"
    if not path.is_file():
        what = f"{kind} index" if kind else "search index"
        build = f"citeagent index build --corpus NAME --kinds {kind or 'bm25'}"
        raise CorpusError(f"No {what} in {directory} (searcher.json is missing). Build one with `{build}`.")
    meta = json.loads(path.read_text(encoding="utf-8"))
    if kind and meta.get("kind") != kind:
        raise CorpusError(f"{directory} holds a {meta.get('kind')} index, not a {kind} index.")
    return meta


# The searcher class of each kind, by name: a hybrid searcher reopens its parts through
# load_searcher, so naming the classes (not importing them) keeps the modules free of cycles.
SEARCHER_CLASSES = {"bm25": "citeenv.search.bm25:BM25Searcher", "dense": "citeenv.search.dense:DenseSearcher",
                    "hybrid": "citeenv.search.hybrid:HybridSearcher"}


def load_searcher(directory):
    """Reopen a searcher saved with .save(directory), whatever its kind."""
    import importlib

    kind = read_meta(Path(directory)).get("kind")
    if kind not in SEARCHER_CLASSES:
        raise CorpusError(f"{directory} holds an index of unknown kind {kind!r} "
                          f"(known: {', '.join(SEARCHER_CLASSES)}).")
    module, _, name = SEARCHER_CLASSES[kind].partition(":")
    return getattr(importlib.import_module(module), name).load(directory)


def save_rows(directory: Path, passage_ids: list[str], doc_ids: list[str]) -> None:
    with open(Path(directory) / "rows.jsonl", "w", encoding="utf-8") as f:
        for pid, did in zip(passage_ids, doc_ids):
            f.write(json.dumps([pid, did], ensure_ascii=False) + "\n")


def load_rows(directory: Path) -> tuple[list[str], list[str]]:
    passage_ids, doc_ids = [], []
    with open(Path(directory) / "rows.jsonl", encoding="utf-8") as f:
        for line in f:
            pid, did = json.loads(line)
            passage_ids.append(pid)
            doc_ids.append(did)
    return passage_ids, doc_ids
