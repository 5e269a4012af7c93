"""Passage search: BM25 (bm25.py), dense (dense.py) and their fusion (hybrid.py), all
following env.search.base.Searcher. `load_searcher(dir)` reopens any saved searcher."""
from __future__ import annotations

from pathlib import Path


def load_searcher(directory):
    """Reopen a searcher saved with .save(directory), whatever its kind."""
    from citeenv.search.storage import read_meta

    kind = read_meta(Path(directory)).get("kind")
    if kind == "bm25":
        from citeenv.search.bm25 import BM25Searcher as cls
    elif kind == "dense":
        from citeenv.search.dense import DenseSearcher as cls
    elif kind == "hybrid":
        from citeenv.search.hybrid import HybridSearcher as cls
    else:
        from citeenv.corpus import CorpusError

        raise CorpusError(f"{directory} holds an index of unknown kind {kind!r} (known: bm25, dense, hybrid).")
    return cls.load(directory)
