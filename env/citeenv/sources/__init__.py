"""Corpus sources by name: `load_corpus(spec)` turns a corpus spec into a Corpus.

Specs:
    pydocs                      the running Python's documentation (the default; offline)
    hotpotqa                    HotpotQA dev paragraphs of all questions, deduplicated by title
    hotpotqa:<_id>              the 10 paragraphs of one HotpotQA question
    jsonl:<path>, <path>.jsonl  any JSONL (optionally .gz) of documents
    hf:<name>[:<split>]         any Hugging Face dataset (or a local dataset file or directory)
    <directory>                 a corpus saved by Corpus.save (or an index directory)
"""
from __future__ import annotations

import re
from pathlib import Path

from citeenv.corpus import DEFAULT_CHUNK_CHARS, Corpus, CorpusError

DEFAULT_CORPUS = "pydocs"


class UnknownCorpusError(CorpusError):
    pass


def known_corpora() -> dict[str, str]:
    """Spec patterns -> what they load."""
    return {
        "pydocs": "the running Python's documentation: language topics and standard-library modules (default)",
        "hotpotqa": "HotpotQA dev distractor paragraphs of all questions, deduplicated by title (shared data)",
        "hotpotqa:<_id>": "the 10 paragraphs of one HotpotQA question",
        "jsonl:<path>": "any JSONL of documents (also a bare path ending in .jsonl or .jsonl.gz)",
        "hf:<name>[:<split>]": "a Hugging Face dataset by name, or a local dataset file/directory",
        "<directory>": "a corpus saved by Corpus.save, or an index directory",
    }


def load_corpus(spec: str | None = None, *, column_map: dict | str | None = None,
                chunk_chars: int = DEFAULT_CHUNK_CHARS, strict: bool = False, **opts) -> Corpus:
    """The corpus a spec names (see known_corpora()). Options:
    column_map   for jsonl/hf: {field: column} or "id=doc_id,text=body"
    strict       for jsonl/hf: fail on the first bad record instead of skipping it with a warning
    source       for hotpotqa: the records file or dataset (default: the shared dev file)
    split, limit for hotpotqa/hf; config for hf; modules for pydocs (a subset, for tests)"""
    spec = (spec or DEFAULT_CORPUS).strip()
    kind, _, arg = spec.partition(":")
    if spec == "pydocs":
        from citeenv.sources.pydocs import build_pydocs

        return build_pydocs(chunk_chars=chunk_chars, **_only(opts, "modules", "include_topics", "include_modules"))
    if kind == "hotpotqa":
        from citeenv.sources import hotpotqa

        hopts = _only(opts, "source", "split")
        if not arg:
            return hotpotqa.pooled_corpus(chunk_chars=chunk_chars, limit=opts.get("limit"), **hopts)
        return hotpotqa.question_corpus(hotpotqa.find_record(arg, **hopts), chunk_chars=chunk_chars)
    if kind == "jsonl" and arg:
        return Corpus.from_jsonl(arg, column_map=column_map, chunk_chars=chunk_chars, strict=strict)
    if kind == "hf" and arg:
        from citeenv.sources.hf import hf_corpus

        name, split = _split_name(arg)
        return hf_corpus(name, split=split, column_map=column_map, chunk_chars=chunk_chars, strict=strict,
                         **_only(opts, "config", "limit"))
    path = Path(spec).expanduser()
    if re.search(r"\.jsonl(\.gz)?$", spec, re.IGNORECASE):
        return Corpus.from_jsonl(path, column_map=column_map, chunk_chars=chunk_chars, strict=strict)
    if path.is_dir() and (path / "corpus.json").is_file():
        return Corpus.load(path)
    if path.is_dir() and (path / "corpus" / "corpus.json").is_file():
        return Corpus.load(path / "corpus")
    known = "\n".join(f"  {k:<22} {v}" for k, v in known_corpora().items())
    raise UnknownCorpusError(f"Unknown corpus {spec!r}. Known corpora:\n{known}")


def _split_name(arg: str) -> tuple[str, str | None]:
    """'user/name:validation' -> ('user/name', 'validation'); a colon inside a path is kept."""
    name, sep, split = arg.rpartition(":")
    if sep and name and re.fullmatch(r"[A-Za-z_][\w.\-\[\]%+]*", split):
        return name, split
    return arg, None


def _only(opts: dict, *names: str) -> dict:
    unknown = set(opts) - {"modules", "include_topics", "include_modules", "source", "split", "limit", "config"}
    if unknown:
        raise CorpusError(f"Unknown corpus option(s): {', '.join(sorted(unknown))}.")
    return {k: v for k, v in opts.items() if k in names and v is not None}
