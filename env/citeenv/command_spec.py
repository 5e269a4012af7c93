"""The command language, defined once: WebGPT's browser commands, their arguments, separators and
default limits. The parser (commands.py), the browser (browser.py) and the LM's decoding grammar
(citeagent/policies/constrained.py) all derive from this module; docs/ENV_SPEC.md describes it
and tests/test_env_spec.py checks the two agree.

A command is its keyword, then, for those that take one, a space and an argument of one kind:

    line    one line of free text (Search, Find in page), at most `max_query_chars`
    link    a link number shown on the current view
    quote   text copied verbatim from the page, or <start>QUOTE_SEP<end>, at most `max_quote_chars`
    scroll  how many windows to move: one of SCROLL_AMOUNTS

The limits here are BrowserConfig's defaults; a browser configured otherwise reports its own in
`info["limits"]`, which is what a policy should obey.
"""
from __future__ import annotations

from dataclasses import dataclass

QUOTE_SEP = "\u2501"  # ━, WebGPT's separator for `Quote: <start>━<end>`
SCROLL_AMOUNTS = ("1", "2", "3")
MAX_LINK_DIGITS = 6  # a link number is at most this many digits

# Default limits (BrowserConfig's defaults).
MAX_QUERY_CHARS = 300  # a Search query, and so any one-line argument
MAX_QUOTE_CHARS = 1000  # one quote
MAX_QUOTES = 10  # quotes an answer may cite
MAX_ANSWER_CHARS = 3000
MAX_QUESTION_CHARS = 2000


@dataclass(frozen=True)
class CommandSpec:
    keyword: str
    arg: str | None  # None, "line", "link", "quote" or "scroll" (see the module docstring)
    usage: str  # how the command is written, for messages
    example: str = ""  # an argument, for messages

    @property
    def literal(self) -> str:
        """What a command of this kind starts with: the keyword, and the space before an argument."""
        return f"{self.keyword} " if self.arg else self.keyword


COMMANDS: tuple[CommandSpec, ...] = (
    CommandSpec("Search", "line", "Search <query>", "python dict comprehension"),
    CommandSpec("Clicked on link", "link", "Clicked on link <id>", "0"),
    CommandSpec("Find in page:", "line", "Find in page: <text>", "json"),
    CommandSpec("Quote:", "quote", f"Quote: <text> | Quote: <start>{QUOTE_SEP}<end>", "text copied from the page"),
    CommandSpec("Scrolled down", "scroll", "Scrolled down <1|2|3>", "1"),
    CommandSpec("Scrolled up", "scroll", "Scrolled up <1|2|3>", "1"),
    CommandSpec("Top", None, "Top"),
    CommandSpec("Back", None, "Back"),
    CommandSpec("End: Answer", None, "End: Answer"),
    CommandSpec("End: Decline", None, "End: Decline"),
)
BY_KEYWORD = {c.keyword: c for c in COMMANDS}
KEYWORDS = tuple(c.keyword for c in COMMANDS)
USAGE = "Valid commands: " + " | ".join(c.usage for c in COMMANDS)
