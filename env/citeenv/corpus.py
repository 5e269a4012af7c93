"""A corpus: documents by id and url, and the passages search runs over.

Saved in a directory as:

    documents.jsonl   one Document.to_dict() per line
    passages.jsonl    {"id", "doc_id", "start", "end"} per line; the passage text is
                      document.text[start:end], so it is not stored twice
    corpus.json       name, chunk size and counts

Passages are stored rather than re-chunked on load so that a saved search index (whose rows
are passage numbers) stays aligned with its corpus even if the chunker changes later.

`Corpus.from_jsonl` reads "any JSONL of documents". Its policy for bad input: lines that are
not JSON objects, or lack a usable `text`, are skipped with one warning that counts them and
names their line numbers (`strict=True` fails on the first one instead, naming the line);
bytes that are not UTF-8 are decoded with replacement characters, with a warning.
"""
from __future__ import annotations

import gzip
import json
import logging
from collections.abc import Iterable, Iterator
from pathlib import Path
from urllib.parse import quote

from citeenv.documents import Document, Link, Passage, chunk_document
from citeenv.unicode_text import may_hold_surrogates, without_lone_surrogates_in

log = logging.getLogger(__name__)

DEFAULT_CHUNK_CHARS = 600
FIELDS = ("id", "title", "url", "text", "links", "meta")


class CorpusError(Exception):
    """Bad input or a missing resource; the message says what is wrong and how to fix it.
    Command-line front ends print it without a traceback."""


class Corpus:
    def __init__(self, documents: Iterable[Document], name: str = "", chunk_chars: int = DEFAULT_CHUNK_CHARS,
                 passages: list[Passage] | None = None):
        self.name = name
        self.chunk_chars = chunk_chars
        self.documents: list[Document] = list(documents)
        self._by_id: dict[str, Document] = {}
        self._by_url: dict[str, Document] = {}
        for doc in self.documents:
            if doc.id in self._by_id:
                raise CorpusError(f"Corpus {name!r} has two documents with id {doc.id!r}; document ids must be unique.")
            self._by_id[doc.id] = doc
            # The first document wins a shared url; sources make urls unique, so this is rare.
            self._by_url.setdefault(doc.url, doc)
        if passages is None:
            passages = [p for doc in self.documents for p in chunk_document(doc, chunk_chars)]
        self.passages: list[Passage] = passages
        self._passage_row = {p.id: i for i, p in enumerate(self.passages)}

    def __len__(self) -> int:
        return len(self.documents)

    def __iter__(self) -> Iterator[Document]:
        return iter(self.documents)

    def __contains__(self, doc_id: str) -> bool:
        return doc_id in self._by_id

    def __repr__(self) -> str:
        return f"Corpus({self.name!r}, {len(self.documents)} documents, {len(self.passages)} passages)"

    def get(self, doc_id: str) -> Document | None:
        return self._by_id.get(doc_id)

    def by_url(self, url: str) -> Document | None:
        return self._by_url.get(url)

    def passage(self, passage_id: str) -> Passage | None:
        row = self._passage_row.get(passage_id)
        return None if row is None else self.passages[row]

    # --- disk --------------------------------------------------------------------------------

    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        with open(directory / "documents.jsonl", "w", encoding="utf-8") as f:
            for doc in self.documents:
                f.write(json.dumps(doc.to_dict(), ensure_ascii=False) + "\n")
        with open(directory / "passages.jsonl", "w", encoding="utf-8") as f:
            for p in self.passages:
                row = {"id": p.id, "doc_id": p.doc_id, "start": p.start, "end": p.end}
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        info = {"name": self.name, "chunk_chars": self.chunk_chars,
                "documents": len(self.documents), "passages": len(self.passages)}
        (directory / "corpus.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> "Corpus":
        directory = Path(directory)
        missing = [n for n in ("corpus.json", "documents.jsonl", "passages.jsonl") if not (directory / n).is_file()]
        if missing:
            raise CorpusError(f"No saved corpus in {directory} (missing {', '.join(missing)}). "
                              "Save one with Corpus.save(dir), or rebuild the index with `citeagent index build`.")
        info = json.loads((directory / "corpus.json").read_text(encoding="utf-8"))
        with open(directory / "documents.jsonl", encoding="utf-8") as f:
            documents = [Document.from_dict(json.loads(line)) for line in f if line.strip()]
        by_id = {d.id: d for d in documents}
        passages = []
        with open(directory / "passages.jsonl", encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    r = json.loads(line)
                    doc = by_id[r["doc_id"]]
                    start, end = r["start"], r["end"]
                    passages.append(Passage(r["id"], doc.id, start, end, doc.text[start:end], doc.title))
        if len(documents) != info.get("documents") or len(passages) != info.get("passages"):
            raise CorpusError(f"The saved corpus in {directory} is incomplete ({len(documents)} documents and "
                              f"{len(passages)} passages on disk, corpus.json says {info.get('documents')} and "
                              f"{info.get('passages')}). Rebuild it with `citeagent index build`.")
        return cls(documents, name=info.get("name", ""), chunk_chars=info.get("chunk_chars", DEFAULT_CHUNK_CHARS),
                   passages=passages)

    @classmethod
    def from_jsonl(cls, path: str | Path, column_map: dict | str | None = None, name: str | None = None,
                   chunk_chars: int = DEFAULT_CHUNK_CHARS, strict: bool = False) -> "Corpus":
        """Any JSONL (optionally .gz) of documents, one JSON object a line. Only `text` is required;
        `id` defaults to the line number, `title` to the id, `url` to local://<name>/<id>.
        Other field names must be mapped explicitly: column_map={"text": "contents", "id": "docid"}
        (or the string "text=contents,id=docid"). See the module docstring for bad-line handling."""
        path = Path(path)
        if not path.is_file():
            raise CorpusError(f"No such JSONL file: {path}")
        name = name or path.name.split(".")[0]
        records = _jsonl_records(path)
        docs = documents_from_records(records, parse_column_map(column_map), name, str(path), "line", strict)
        return cls(docs, name=name, chunk_chars=chunk_chars)


class BadRecord:
    """Stands in for a record that could not be parsed, so the collector can report it."""

    def __init__(self, problem: str):
        self.problem = problem


def documents_from_records(records: Iterable[tuple[int, object]], column_map: dict[str, str], corpus_name: str,
                           source: str, unit: str = "line", strict: bool = False) -> list[Document]:
    """Turn numbered records into Documents. Bad ones (a BadRecord, a non-object, no text, a
    duplicate id) are skipped with one warning naming them, or with strict=True raise at the first."""
    docs: list[Document] = []
    seen: set[str] = set()
    bad: list[tuple[int, str]] = []
    for n, record in records:
        if isinstance(record, BadRecord):
            problem = record.problem
        else:
            try:
                doc = record_to_document(record, column_map, default_id=str(n), corpus_name=corpus_name)
                problem = f"duplicate id {doc.id!r}" if doc.id in seen else ""
            except (CorpusError, ValueError, TypeError, OverflowError) as e:  # e.g. a link offset that is no int
                problem = str(e)[:300] or type(e).__name__
        if problem:
            if strict:
                raise CorpusError(f"{source}, {unit} {n}: {problem}. "
                                  f"(Without strict mode bad {unit}s are skipped with a warning.)")
            bad.append((n, problem))
            continue
        seen.add(doc.id)
        docs.append(doc)
    if bad:
        log.warning("%s: skipped %d bad %s(s) of %d: %s.", source, len(bad), unit, len(bad) + len(docs),
                    "; ".join(f"{unit} {n}: {why}" for n, why in bad[:10]) + ("; ..." if len(bad) > 10 else ""))
    if not docs:
        hint = f" The first problem: {unit} {bad[0][0]}: {bad[0][1]}." if bad else ""
        raise CorpusError(f"No documents in {source}.{hint} Each {unit} must be an object with a 'text' field "
                          "(map other names with --column-map text=FIELD,id=FIELD).")
    return docs


def _jsonl_records(path: Path) -> Iterator[tuple[int, object]]:
    undecodable: list[int] = []
    for lineno, raw in _read_lines(path):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            line = raw.decode("utf-8", errors="replace")
            undecodable.append(lineno)
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            # "\ud800" parses to a lone surrogate, which no UTF-8 writer accepts (saving the corpus failed)
            yield lineno, without_lone_surrogates_in(record) if may_hold_surrogates(line) else record
        except json.JSONDecodeError as e:
            yield lineno, BadRecord(f"not valid JSON ({e.msg} at column {e.colno})")
        except RecursionError:
            yield lineno, BadRecord("not valid JSON (nested too deeply)")
    if undecodable:
        log.warning("%s: %d line(s) were not valid UTF-8 and were decoded with replacement characters (lines %s).",
                    path, len(undecodable), _some(undecodable))


def _read_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            yield from enumerate(f, start=1)
    except (OSError, EOFError) as e:  # a truncated or non-gzip .gz file
        raise CorpusError(f"Could not read {path}: {e}") from None


def _some(numbers: list[int], n: int = 10) -> str:
    return ", ".join(map(str, numbers[:n])) + (", ..." if len(numbers) > n else "")


def parse_column_map(spec: dict | str | None) -> dict[str, str]:
    """'id=doc_id,text=body' (or a dict) -> {our field: their column}. Fields: id, title, url, text, links, meta."""
    if not spec:
        return {}
    if isinstance(spec, str):
        pairs = {}
        for item in spec.split(","):
            if not item.strip():
                continue
            field_name, sep, column = item.partition("=")
            if not sep or not field_name.strip() or not column.strip():
                raise CorpusError(f"Bad column map item {item!r}: expected FIELD=COLUMN, e.g. "
                                  "--column-map id=doc_id,text=body")
            pairs[field_name.strip()] = column.strip()
        spec = pairs
    unknown = sorted(set(spec) - set(FIELDS))
    if unknown:
        raise CorpusError(f"Unknown field(s) in the column map: {', '.join(unknown)}. "
                          f"The fields a column can map to are: {', '.join(FIELDS)}.")
    return dict(spec)


def record_to_document(record, column_map: dict[str, str], default_id: str, corpus_name: str) -> Document:
    """Map one record (a dict) to a Document, or raise CorpusError saying what is wrong with it.
    A field named in column_map must be present; unmapped fields fall back to defaults.
    Unmapped scalar fields are kept in meta, so nothing in the record is silently dropped."""
    if not isinstance(record, dict):
        raise CorpusError(f"not a JSON object (got {type(record).__name__})")
    col = {f: column_map.get(f, f) for f in FIELDS}

    def value(field_name):
        if field_name in column_map and column_map[field_name] not in record:
            raise CorpusError(f"no {column_map[field_name]!r} field (mapped to {field_name}); "
                              f"its fields are: {', '.join(map(str, record))}")
        return record.get(col[field_name])

    text = value("text")
    if not isinstance(text, str):
        if text is None:
            raise CorpusError(f"no 'text' field; its fields are: {', '.join(map(str, record))} "
                              "(map one with --column-map text=FIELD)")
        raise CorpusError(f"'{col['text']}' is not a string (it is {type(text).__name__})")
    doc_id = value("id")
    doc_id = default_id if doc_id is None or doc_id == "" else str(doc_id)
    title = value("title")
    url = value("url")
    links = []
    for lk in value("links") or []:
        if isinstance(lk, str):
            links.append(Link(text=lk, url=lk))
        elif isinstance(lk, dict) and "url" in lk:
            links.append(Link(text=str(lk.get("text", "")), url=str(lk["url"]),
                              start=int(lk.get("start", -1)), end=int(lk.get("end", -1))))
        elif isinstance(lk, (list, tuple)) and len(lk) >= 2:
            links.append(Link(str(lk[0]), str(lk[1]), *(int(x) for x in lk[2:4])))
        else:
            raise CorpusError(f"a link is not a url, {{text, url}} object or [text, url] pair: {lk!r}")
    meta = value("meta")
    meta = dict(meta) if isinstance(meta, dict) else {}
    used = {col[f] for f in FIELDS}
    for key, v in record.items():
        if key not in used and isinstance(v, (str, int, float, bool)):
            meta.setdefault(key, v)
    return Document(
        id=doc_id,
        title=str(title) if title else doc_id,
        url=str(url) if url else f"local://{quote(corpus_name, safe='')}/{quote(doc_id, safe='')}",
        text=text,
        links=links,
        meta=meta,
    )
