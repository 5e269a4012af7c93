"""Passage search: BM25 (bm25.py), dense (dense.py) and their fusion (hybrid.py), all
following citeenv.search.base.Searcher. `load_searcher(dir)` reopens any saved searcher."""
from __future__ import annotations

from citeenv.search.storage import load_searcher

__all__ = ["load_searcher"]
