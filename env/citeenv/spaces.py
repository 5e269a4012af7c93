"""Gymnasium spaces for free text. Gymnasium's own `Text` space needs a fixed charset, but pages
hold any Unicode, so observations and actions use these instead."""
from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium.spaces import Space

from citeenv.commands import KEYWORDS, QUOTE_SEP


class UnicodeText(Space[str]):
    """Any str of at most `max_length` characters."""

    def __init__(self, max_length: int, seed: int | np.random.Generator | None = None):
        self.max_length = max_length
        super().__init__(shape=None, dtype=str, seed=seed)

    @property
    def is_np_flattenable(self) -> bool:
        return False

    def contains(self, x: Any) -> bool:
        return isinstance(x, str) and len(x) <= self.max_length

    def sample(self, mask: Any = None, probability: Any = None) -> str:
        n = int(self.np_random.integers(1, min(self.max_length, 80) + 1))
        return "".join(chr(int(c)) for c in self.np_random.integers(32, 127, size=n))

    def __repr__(self) -> str:
        return f"UnicodeText({self.max_length})"

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, UnicodeText) and other.max_length == self.max_length


class CommandText(UnicodeText):
    """Browser commands. `sample()` draws syntactically plausible commands (some invalid on
    purpose, since the environment must survive them), which keeps random rollouts useful."""

    _WORDS = ("python", "list", "json", "dict", "file", "the", "function", "module", "string", "error")

    def sample(self, mask: Any = None, probability: Any = None) -> str:
        r = self.np_random
        kind = KEYWORDS[int(r.integers(len(KEYWORDS)))]
        words = " ".join(self._WORDS[int(i)] for i in r.integers(len(self._WORDS), size=int(r.integers(1, 4))))
        if kind == "Search" or kind == "Find in page:":
            return f"{kind} {words}"
        if kind == "Quote:":
            return f"Quote: {words}" if r.random() < 0.8 else f"Quote: {words}{QUOTE_SEP}{words}"
        if kind == "Clicked on link":
            return f"{kind} {int(r.integers(0, 10))}"
        if kind.startswith("Scrolled"):
            return f"{kind} {int(r.integers(1, 4))}"
        return kind
