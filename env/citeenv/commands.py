"""Parsing WebGPT's browser commands. Parsing never raises: a bad command becomes a
`CommandError` value whose message says what was wrong and what is valid."""
from __future__ import annotations

import re
from dataclasses import dataclass

QUOTE_SEP = "\u2501"  # ━, WebGPT's separator for `Quote: <start>━<end>`

KEYWORDS = (
    "Search",
    "Clicked on link",
    "Find in page:",
    "Quote:",
    "Scrolled down",
    "Scrolled up",
    "Top",
    "Back",
    "End: Answer",
    "End: Decline",
)

USAGE = (
    "Valid commands: Search <query> | Clicked on link <id> | Find in page: <text> | Quote: <text> | "
    f"Quote: <start>{QUOTE_SEP}<end> | Scrolled down <1|2|3> | Scrolled up <1|2|3> | Top | Back | "
    "End: Answer | End: Decline"
)


@dataclass(frozen=True)
class Command:
    kind: str  # one of KEYWORDS
    arg: str = ""  # query, text or quote; for links and scrolls the number as text

    @property
    def number(self) -> int:
        return int(self.arg)

    def __str__(self) -> str:
        return f"{self.kind} {self.arg}".rstrip() if self.arg else self.kind


@dataclass(frozen=True)
class CommandError:
    message: str


_EXAMPLE = {"Search": "python dict comprehension", "Find in page:": "json", "Quote:": "text copied from the page"}
_INT = re.compile(r"^\d{1,6}$")


def parse_command(text: str, max_arg_chars: int = 2000) -> Command | CommandError:
    if not isinstance(text, str):
        return CommandError(f"An action must be text, got {type(text).__name__}. {USAGE}")
    line = text.strip()
    if not line:
        return CommandError(f"The action was empty. {USAGE}")
    if "\n" in line:
        return CommandError(f"An action is one line; this one had several. {USAGE}")
    for kind in ("End: Answer", "End: Decline", "Top", "Back"):
        if line == kind:
            return Command(kind)
    for kind in ("Find in page:", "Quote:", "Clicked on link", "Scrolled down", "Scrolled up", "Search"):
        if line == kind or line.startswith(kind + " ") or (kind.endswith(":") and line.startswith(kind)):
            arg = line[len(kind):].strip()
            return _check_arg(kind, arg, max_arg_chars)
    head = line.split(" ", 1)[0][:40]
    return CommandError(f'Unknown command "{head}". {USAGE}')


def _check_arg(kind: str, arg: str, max_arg_chars: int) -> Command | CommandError:
    if kind in ("Clicked on link",):
        if not _INT.match(arg):
            return CommandError(f'"{kind}" needs a link number shown on the page, e.g. "{kind} 0"; got "{arg[:40]}".')
        return Command(kind, str(int(arg)))
    if kind in ("Scrolled down", "Scrolled up"):
        if arg not in ("1", "2", "3"):
            return CommandError(f'"{kind}" takes 1, 2 or 3 (windows to move); got "{arg[:40]}".')
        return Command(kind, arg)
    if not arg:
        return CommandError(f'"{kind}" needs text after it, e.g. "{kind} {_EXAMPLE[kind]}".')
    if len(arg) > max_arg_chars:
        return CommandError(f'The text after "{kind}" is {len(arg)} characters; the limit is {max_arg_chars}.')
    if kind == "Quote:" and arg.count(QUOTE_SEP) > 1:
        return CommandError(f"A quote may contain at most one {QUOTE_SEP} separator (Quote: <start>{QUOTE_SEP}<end>).")
    return Command(kind, arg)
