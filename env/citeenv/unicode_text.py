"""Text that every backend, file and socket can take.

Python strings may hold lone surrogates (U+D800-U+DFFF): JSON's "\\ud800" escapes and
`surrogateescape` decoding produce them. No UTF-8 encoder accepts them, so one in a query,
a quote or a saved record raises UnicodeEncodeError far from where it came in. Text entering
the environment is cleaned here once."""
from __future__ import annotations

import re

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def without_lone_surrogates(text: str) -> str:
    """text with every lone surrogate replaced by U+FFFD (the replacement character)."""
    return _LONE_SURROGATE.sub("\ufffd", text)


def without_lone_surrogates_in(value):
    """A parsed JSON value with every string in it (keys too) passed through without_lone_surrogates."""
    if isinstance(value, str):
        return without_lone_surrogates(value)
    if isinstance(value, list):
        return [without_lone_surrogates_in(v) for v in value]
    if isinstance(value, dict):
        return {without_lone_surrogates_in(k): without_lone_surrogates_in(v) for k, v in value.items()}
    return value


def may_hold_surrogates(json_text: str) -> bool:
    """Whether a JSON text has a \\uD800-\\uDFFF escape (cheap; true also for valid pairs)."""
    return "\\ud" in json_text or "\\uD" in json_text
