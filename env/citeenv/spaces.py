"""Gymnasium spaces for free text. Gymnasium's own `Text` space needs a fixed charset, but pages
hold any Unicode, so observations and actions use these instead."""
from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium.spaces import Space

from citeenv.command_spec import COMMANDS, QUOTE_SEP, SCROLL_AMOUNTS


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
        spec = COMMANDS[int(r.integers(len(COMMANDS)))]
        words = " ".join(self._WORDS[int(i)] for i in r.integers(len(self._WORDS), size=int(r.integers(1, 4))))
        if spec.arg == "line":
            return f"{spec.literal}{words}"
        if spec.arg == "quote":
            return f"{spec.literal}{words}" if r.random() < 0.8 else f"{spec.literal}{words}{QUOTE_SEP}{words}"
        if spec.arg == "link":
            return f"{spec.literal}{int(r.integers(0, 10))}"
        if spec.arg == "scroll":
            return f"{spec.literal}{SCROLL_AMOUNTS[int(r.integers(len(SCROLL_AMOUNTS)))]}"
        return spec.keyword


def _vectorize_like_text() -> None:
    """gymnasium.vector batches a free-text space the way it batches its own Text space (a tuple of
    strings), so these spaces work under SyncVectorEnv and AsyncVectorEnv (the latter with
    shared_memory=False: text has no fixed size to share)."""
    from gymnasium.spaces import Text
    from gymnasium.vector.utils import batch_differing_spaces, batch_space, concatenate, create_empty_array

    for fn in (batch_space, batch_differing_spaces, concatenate):
        fn.register(UnicodeText, fn.dispatch(Text))
    create_empty_array.register(UnicodeText, lambda space, n=1, fn=None: tuple("" for _ in range(n)))


_vectorize_like_text()
