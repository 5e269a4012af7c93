"""On-disk search indexes: build once per corpus, reopen without rebuilding.

An index directory (default `citeagent_home()/indexes/<index_name(spec)>`):

    manifest.json   format, spec, corpus name, document/passage counts, chunk size, a fingerprint
                    of the stored corpus, creation time, library versions, and per kind
                    ("bm25", "dense") when and how long it took to build (dense: embedder, dim)
    corpus/         the Corpus (Corpus.save): corpus.json, documents.jsonl, passages.jsonl
    bm25/           BM25Searcher.save
    dense/          DenseSearcher.save

Index rows are passage numbers, so the searchers are only valid with the corpus stored beside
them. A build always re-reads the source; kinds built earlier are kept only if the re-read
corpus is identical (same fingerprint), otherwise they are dropped as stale. A build is written
to a staging directory and swapped in at the end, so a failed build leaves the old index intact.

Per-question HotpotQA corpora (10 paragraphs) are indexed in memory instead: `in_memory_index`.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import platform
import re
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path

from citeenv.corpus import Corpus, CorpusError
from citeenv.paths import citeagent_home
from citeenv.search.bm25 import BM25Config, BM25Searcher
from citeenv.sources import DEFAULT_CORPUS, load_corpus

log = logging.getLogger(__name__)

FORMAT = 1
KINDS = ("bm25", "dense")
SEARCH_KINDS = ("bm25", "dense", "hybrid")


class IndexMissingError(CorpusError):
    pass


def index_name(spec: str) -> str:
    """A directory name for a corpus spec. Specs naming local files get the file name and a hash
    of its absolute path, so `docs.jsonl`, `./docs.jsonl` and `jsonl:docs.jsonl` share an index."""
    spec = spec or DEFAULT_CORPUS
    kind, _, arg = spec.partition(":")
    split = None
    if kind == "hf":
        from citeenv.sources import _split_name

        arg, split = _split_name(arg)
    elif kind != "jsonl":
        kind, arg = ("jsonl" if re.search(r"\.jsonl(\.gz)?$", spec, re.IGNORECASE) else "dir"), spec
    path = Path(arg).expanduser()
    if path.exists():
        digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]
        name = "-".join(x for x in (kind, path.name, split) if x)
        return f"{_slug(name)[:60]}-{digest}"
    return _slug(spec)[:100] or "corpus"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")


def default_index_dir(spec: str) -> Path:
    return citeagent_home() / "indexes" / index_name(spec)


def _kinds(kinds) -> list[str]:
    if isinstance(kinds, str):
        kinds = [k.strip() for k in kinds.split(",") if k.strip()]
    out = []
    for kind in kinds:
        if kind not in SEARCH_KINDS:
            raise CorpusError(f"Unknown index kind {kind!r}; the kinds are: {', '.join(SEARCH_KINDS)}.")
        out += list(KINDS) if kind == "hybrid" else [kind]
    return list(dict.fromkeys(out)) or ["bm25"]


def read_manifest(index_dir: str | Path) -> dict | None:
    path = Path(index_dir) / "manifest.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _fingerprint(corpus_dir: Path) -> str:
    h = hashlib.sha256()
    for name in ("documents.jsonl", "passages.jsonl"):
        with open(corpus_dir / name, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def _versions() -> dict:
    import bm25s
    import numpy

    out = {"python": platform.python_version(), "numpy": numpy.__version__, "bm25s": bm25s.__version__}
    for name in ("faiss", "sentence_transformers"):
        try:
            out[name] = __import__(name).__version__
        except Exception:
            pass
    return out


def build_index(spec: str = DEFAULT_CORPUS, out_dir: str | Path | None = None, kinds=("bm25",),
                embedder: str | None = None, column_map: dict | str | None = None, chunk_chars: int = 600,
                bm25_config: BM25Config | None = None, dense_config=None, show_progress: bool = True,
                **corpus_opts) -> Path:
    """Build (or rebuild) the index of a corpus spec; returns its directory.
    kinds: any of "bm25", "dense", "hybrid" (= both), as a list or "bm25,dense"."""
    kinds = _kinds(kinds)
    out = Path(out_dir) if out_dir else default_index_dir(spec)
    old = read_manifest(out) if out.is_dir() else None
    if out.is_dir() and old is None and any(out.iterdir()):
        raise CorpusError(f"{out} exists and is not an index directory; refusing to overwrite it. "
                          "Pick another --out, or remove it first.")
    t0 = time.perf_counter()
    corpus = load_corpus(spec, column_map=column_map, chunk_chars=chunk_chars, **corpus_opts)
    if not corpus.passages:
        raise CorpusError(f"The corpus {spec!r} has no text to index ({len(corpus)} documents, 0 passages).")
    load_seconds = time.perf_counter() - t0

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.building-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        corpus.save(staging / "corpus")
        fingerprint = _fingerprint(staging / "corpus")
        built = {}
        for kind in kinds:
            t = time.perf_counter()
            if kind == "bm25":
                BM25Searcher.build(corpus.passages, bm25_config, show_progress=show_progress).save(staging / kind)
                built[kind] = {}
            else:
                from citeenv.search.dense import DenseConfig, DenseSearcher

                config = dense_config or DenseConfig()
                if embedder:
                    config = dataclasses.replace(config, embedder=embedder)
                searcher = DenseSearcher.build(corpus.passages, config, show_progress=show_progress)
                searcher.save(staging / kind)
                built[kind] = {"embedder": config.embedder, "dim": searcher.dim}
            built[kind].update(built_at=_now(), seconds=round(time.perf_counter() - t, 2))
        # Keep earlier kinds only when they index exactly this corpus.
        kept = {}
        if old and old.get("corpus_fingerprint") == fingerprint:
            kept = {k: v for k, v in old.get("kinds", {}).items() if k not in built and (out / k).is_dir()}
        elif old and set(old.get("kinds", {})) - set(built):
            log.warning("The corpus changed since %s was built; dropping its stale %s index(es).", out,
                        ", ".join(sorted(set(old["kinds"]) - set(built))))
        for kind in kept:
            shutil.copytree(out / kind, staging / kind)
        manifest = {
            "format": FORMAT,
            "spec": spec,
            "name": corpus.name,
            "documents": len(corpus),
            "passages": len(corpus.passages),
            "chunk_chars": chunk_chars,
            "column_map": column_map if isinstance(column_map, (dict, type(None))) else str(column_map),
            "corpus_fingerprint": fingerprint,
            "created": _now(),
            "corpus_seconds": round(load_seconds, 2),
            "kinds": {**kept, **built},
            "versions": _versions(),
        }
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n",
                                               encoding="utf-8")
        _swap(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def _swap(staging: Path, out: Path) -> None:
    trash = out.parent / f".{out.name}.old-{os.getpid()}"
    if out.exists():
        out.rename(trash)
    staging.rename(out)
    shutil.rmtree(trash, ignore_errors=True)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def resolve_index_dir(spec_or_dir: str | Path | None) -> tuple[Path, str]:
    """(index directory, corpus spec) for an index directory or a corpus spec."""
    path = Path(spec_or_dir).expanduser() if spec_or_dir else None
    if path is not None and path.is_dir() and (path / "manifest.json").is_file():
        return path, read_manifest(path)["spec"]
    spec = str(spec_or_dir or DEFAULT_CORPUS)
    return default_index_dir(spec), spec


def open_index(spec_or_dir: str | Path | None = DEFAULT_CORPUS, kind: str = "bm25", build_if_missing: bool = False,
               embedder: str | None = None, **build_opts):
    """(Corpus, Searcher) of a built index. kind: "bm25", "dense" or "hybrid" (RRF of both).
    A missing index raises IndexMissingError with the command that builds it, unless
    build_if_missing=True, which builds it (build_opts go to build_index)."""
    if kind not in SEARCH_KINDS:
        raise CorpusError(f"Unknown index kind {kind!r}; the kinds are: {', '.join(SEARCH_KINDS)}.")
    index_dir, spec = resolve_index_dir(spec_or_dir)
    needed = _kinds([kind])
    manifest = read_manifest(index_dir)
    missing = [k for k in needed if manifest is None or k not in manifest.get("kinds", {})
               or not (index_dir / k).is_dir()]
    if missing:
        if not build_if_missing:
            flags = f" --kinds {','.join(needed)}" if needed != ["bm25"] else ""
            flags += f" --embedder {embedder}" if embedder and "dense" in needed else ""
            out = f" --out {index_dir}" if index_dir != default_index_dir(spec) else ""
            raise IndexMissingError(f"No {' + '.join(missing)} index for corpus {spec!r} at {index_dir}. "
                                    "Build it with:\n"
                                    f"  citeagent index build --corpus {spec}{flags}{out}")
        build_index(spec, out_dir=index_dir, kinds=needed, embedder=embedder, **build_opts)
        manifest = read_manifest(index_dir)
    if embedder and "dense" in needed:
        built_with = manifest["kinds"]["dense"].get("embedder")
        if built_with != embedder:
            raise CorpusError(f"The dense index at {index_dir} was built with the embedder {built_with!r}, not "
                              f"{embedder!r}. Rebuild it: citeagent index build --corpus {spec} --kinds dense "
                              f"--embedder {embedder}")
    corpus = Corpus.load(index_dir / "corpus")
    searchers = [_load_kind(index_dir, k) for k in needed]
    for s in searchers:
        if len(s) != len(corpus.passages):
            raise CorpusError(f"The {s.name} index at {index_dir} has {len(s)} rows but the corpus has "
                              f"{len(corpus.passages)} passages. Rebuild it: citeagent index build --corpus {spec}")
    if kind == "hybrid":
        from citeenv.search.hybrid import HybridSearcher

        return corpus, HybridSearcher(*searchers)
    return corpus, searchers[0]


def _load_kind(index_dir: Path, kind: str):
    if kind == "bm25":
        return BM25Searcher.load(index_dir / "bm25")
    from citeenv.search.dense import DenseSearcher

    return DenseSearcher.load(index_dir / "dense")


def in_memory_index(corpus: Corpus, kind: str = "bm25", embedder: str | None = None,
                    bm25_config: BM25Config | None = None, dense_config=None):
    """A searcher over a small corpus, built in memory with no files and no progress bars.
    For per-question corpora (HotpotQA's 10 paragraphs): evaluation builds hundreds of these.
    The dense embedder is loaded once per process and shared."""
    if kind not in SEARCH_KINDS:
        raise CorpusError(f"Unknown index kind {kind!r}; the kinds are: {', '.join(SEARCH_KINDS)}.")
    if not corpus.passages:
        raise CorpusError(f"The corpus {corpus.name!r} has no text to index.")
    searchers = []
    for k in _kinds([kind]):
        if k == "bm25":
            searchers.append(BM25Searcher.build(corpus.passages, bm25_config, show_progress=False))
        else:
            from citeenv.search.dense import DenseConfig, DenseSearcher

            config = dense_config or DenseConfig()
            if embedder:
                config = dataclasses.replace(config, embedder=embedder)
            searchers.append(DenseSearcher.build(corpus.passages, config, show_progress=False))
    if kind == "hybrid":
        from citeenv.search.hybrid import HybridSearcher

        return HybridSearcher(*searchers)
    return searchers[0]


def index_info(spec_or_dir: str | Path | None = DEFAULT_CORPUS) -> dict:
    """The manifest of a built index plus its directory and size; IndexMissingError if none."""
    index_dir, spec = resolve_index_dir(spec_or_dir)
    manifest = read_manifest(index_dir)
    if manifest is None:
        raise IndexMissingError(f"No index for corpus {spec!r} at {index_dir}. Build it with:\n"
                                f"  citeagent index build --corpus {spec}")
    size = sum(p.stat().st_size for p in index_dir.rglob("*") if p.is_file())
    return {**manifest, "directory": str(index_dir), "bytes": size}


def list_indexes() -> list[dict]:
    root = citeagent_home() / "indexes"
    out = []
    for d in sorted(root.iterdir()) if root.is_dir() else []:
        manifest = read_manifest(d) if d.is_dir() and not d.name.startswith(".") else None  # . = staging
        if manifest:
            out.append({"directory": str(d), "spec": manifest["spec"], "passages": manifest["passages"],
                        "kinds": sorted(manifest.get("kinds", {}))})
    return out
