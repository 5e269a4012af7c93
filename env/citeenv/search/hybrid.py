"""Hybrid search: reciprocal-rank fusion (Cormack et al. 2009) of any two searchers.

A passage's fused score is the sum over the searchers that return it of 1 / (k + rank), rank
counted from 1, k = 60. Only ranks matter, so BM25 and cosine scores need no calibration.
Ties go to the passage with the better single rank, then to the first searcher's order.

Saved as a directory: searcher.json (kind, k, depth, the parts' kinds) and first/, second/
holding the two searchers.
"""
from __future__ import annotations

from pathlib import Path

from citeenv.search.base import Hit, Searcher
from citeenv.search.storage import load_searcher, read_meta, write_meta


class HybridSearcher:
    name = "hybrid"

    def __init__(self, first: Searcher, second: Searcher, k: int = 60, depth: int = 100):
        self.first = first
        self.second = second
        self.k = k
        self.depth = depth  # how many hits to fuse from each searcher
        self._pool = None

    def search(self, query: str, k: int = 10) -> list[Hit]:
        depth = max(k, self.depth)
        # The two searches run at once: the query encoder, faiss and bm25s's numpy scoring all
        # release the GIL, so on 2 cores a hybrid query costs about its slower half, not the sum.
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hybrid")
        second = self._pool.submit(self.second.search, query, depth)
        both = (self.first.search(query, depth), second.result())
        fused: dict[str, list] = {}  # passage id -> [score, best rank, order seen, doc id]
        for hits in both:
            for h in hits:
                entry = fused.get(h.passage_id)
                if entry is None:
                    fused[h.passage_id] = entry = [0.0, h.rank, len(fused), h.doc_id]
                entry[0] += 1.0 / (self.k + h.rank + 1)
                entry[1] = min(entry[1], h.rank)
        ranked = sorted(fused.items(), key=lambda kv: (-kv[1][0], kv[1][1], kv[1][2]))[:k]
        return [Hit(pid, e[3], e[0], rank) for rank, (pid, e) in enumerate(ranked)]

    def save(self, directory) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.first.save(directory / "first")
        self.second.save(directory / "second")
        write_meta(directory, self.name, k=self.k, depth=self.depth, parts=[self.first.name, self.second.name])

    @classmethod
    def load(cls, directory) -> "HybridSearcher":
        directory = Path(directory)
        meta = read_meta(directory, cls.name)
        return cls(load_searcher(directory / "first"), load_searcher(directory / "second"),
                   k=meta["k"], depth=meta["depth"])
