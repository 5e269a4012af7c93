"""Parsing WebGPT's browser commands. Parsing never raises: a bad command becomes a
`CommandError` value whose message says what was wrong and what is valid."""
from __future__ import annotations

import re
from dataclasses import dataclass

from citeenv.command_spec import BY_KEYWORD, COMMANDS, KEYWORDS, MAX_LINK_DIGITS, QUOTE_SEP, SCROLL_AMOUNTS, USAGE

__all__ = ["Command", "CommandError", "KEYWORDS", "QUOTE_SEP", "USAGE", "parse_command"]


@dataclass(frozen=True)
class Command:
    kind: str  # one of command_spec.KEYWORDS
    arg: str = ""  # query, text or quote; for links and scrolls the number as text

    @property
    def number(self) -> int:
        return int(self.arg)

    def __str__(self) -> str:
        return f"{self.kind} {self.arg}".rstrip() if self.arg else self.kind


@dataclass(frozen=True)
class CommandError:
    message: str


_INT = re.compile(rf"^\d{{1,{MAX_LINK_DIGITS}}}$")
# Longer keywords first, so that no keyword is mistaken for a prefix of another.
_BY_LENGTH = sorted(COMMANDS, key=lambda c: -len(c.keyword))


def parse_command(text: str, max_arg_chars: int = 2000) -> Command | CommandError:
    if not isinstance(text, str):
        return CommandError(f"An action must be text, got {type(text).__name__}. {USAGE}")
    line = text.strip()
    if not line:
        return CommandError(f"The action was empty. {USAGE}")
    if "\n" in line:
        return CommandError(f"An action is one line; this one had several. {USAGE}")
    for spec in _BY_LENGTH:
        kind = spec.keyword
        if spec.arg is None:
            if line == kind:
                return Command(kind)
        elif line == kind or line.startswith(kind + " ") or (kind.endswith(":") and line.startswith(kind)):
            return _check_arg(kind, line[len(kind):].strip(), max_arg_chars)
    head = line.split(" ", 1)[0][:40]
    return CommandError(f'Unknown command "{head}". {USAGE}')


def _check_arg(kind: str, arg: str, max_arg_chars: int) -> Command | CommandError:
    spec = BY_KEYWORD[kind]
    if spec.arg == "link":
        if not _INT.match(arg):
            return CommandError(f'"{kind}" needs a link number shown on the page, e.g. "{kind} 0"; got "{arg[:40]}".')
        return Command(kind, str(int(arg)))
    if spec.arg == "scroll":
        if arg not in SCROLL_AMOUNTS:
            return CommandError(f'"{kind}" takes {", ".join(SCROLL_AMOUNTS[:-1])} or {SCROLL_AMOUNTS[-1]} (windows to '
                                f'move); got "{arg[:40]}".')
        return Command(kind, arg)
    if not arg:
        return CommandError(f'"{kind}" needs text after it, e.g. "{kind} {spec.example}".')
    if len(arg) > max_arg_chars:
        return CommandError(f'The text after "{kind}" is {len(arg)} characters; the limit is {max_arg_chars}.')
    if spec.arg == "quote" and arg.count(QUOTE_SEP) > 1:
        return CommandError(f"A quote may contain at most one {QUOTE_SEP} separator (Quote: <start>{QUOTE_SEP}<end>).")
    return Command(kind, arg)
