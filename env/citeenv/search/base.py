"""The searcher facade: `search(query, k)` returns ranked hits with passage ids and scores."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Hit:
    passage_id: str
    doc_id: str
    score: float
    rank: int  # 0-based


class Searcher(Protocol):
    name: str

    def search(self, query: str, k: int = 10) -> list[Hit]: ...

    def save(self, directory) -> None: ...
