"""The observation's layout, defined once: the lines the browser writes (browser.py builds every
observation with these) and, for a policy that must shorten an observation to fit a context
window, where its sections begin (`sections`). docs/ENV_SPEC.md shows a full observation.

    Question: <question>                       | question
    Quotes: ... / Past actions: ...            | context
    Current page: <title> (<url>)              | page
    <the window's text>                        | window
    (window i of n) / Error: / Actions left: / Next action:   | closing

In the answering phase there is no page: the quotes are followed by the closing lines
"Write the answer, ..." and "Answer:".
"""
from __future__ import annotations

from dataclasses import dataclass

QUESTION = "Question: "
QUOTES = "Quotes:"
PAST_ACTIONS = "Past actions: "
CURRENT_PAGE = "Current page: "
WINDOW_POSITION = "(window "
ERROR = "Error: "
ACTIONS_LEFT = "Actions left: "
NEXT_ACTION = "Next action:"
WRITE_ANSWER = "Write the answer, citing quotes with [n] markers."
ANSWER_PROMPT = "Answer:"
# Lines that end an observation; what sits between the page line and them is the page window.
CLOSING = (WINDOW_POSITION, ERROR.rstrip(), ACTIONS_LEFT.rstrip(), NEXT_ACTION, WRITE_ANSWER, ANSWER_PROMPT)


@dataclass
class Sections:
    """An observation's lines by section; "\\n".join of the non-empty ones, in order, is the text."""
    question: list[str]
    context: list[str]
    page: list[str]
    window: list[str]
    closing: list[str]

    def blocks(self) -> list[list[str]]:
        return [self.question, self.context, self.page, self.window, self.closing]


def sections(observation: str) -> Sections:
    lines = observation.split("\n")
    tail = next((i for i in range(1, len(lines)) if lines[i].startswith(CLOSING)), len(lines))
    page = next((i for i in range(1, tail) if lines[i].startswith(CURRENT_PAGE.rstrip())), None)
    if page is None:  # the answering phase: no page, only quotes
        return Sections(lines[:1], lines[1:tail], [], [], lines[tail:])
    return Sections(lines[:1], lines[1:page], lines[page:page + 1], lines[page + 1:tail], lines[tail:])


def asks_for_answer(observation: str) -> bool:
    """The answering phase's observation ends with the "Answer:" prompt line."""
    text = observation.rstrip()
    return text == ANSWER_PROMPT or text.endswith("\n" + ANSWER_PROMPT)
