"""The policy interface: observation text in, one browser command out."""
from __future__ import annotations

from typing import Protocol


class Policy(Protocol):
    name: str

    def act(self, observation: str, info: dict) -> str:
        """Return the next command (or, in the answering phase, the answer text)."""
        ...

    def act_batch(self, observations: list[str], infos: list[dict]) -> list[str]:
        ...
