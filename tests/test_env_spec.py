"""docs/ENV_SPEC.md against the code: its command table names exactly the command spec's
keywords, its info list names exactly the keys the browser returns (in every phase and view),
and the spec's limits are the browser's defaults."""
import re
from pathlib import Path

from citeenv import command_spec
from citeenv.candidates import CandidateConfig
from citeenv.browser import Browser, BrowserConfig
from citeenv.commands import parse_command
from citeenv.corpus import Corpus
from citeenv.documents import Document
from citeenv.index import in_memory_index
from citeenv.local import LocalBackend

SPEC = (Path(__file__).resolve().parents[1] / "docs" / "ENV_SPEC.md").read_text()
OPTIONAL = {"results", "page", "answer"}  # the spec marks these "only ..."


def section(title: str) -> str:
    start = SPEC.index(f"## {title}")
    end = SPEC.find("\n## ", start + 3)
    return SPEC[start:end if end >= 0 else None]


def test_the_spec_lists_every_command_and_only_those():
    table = [line for line in section("Commands").splitlines() if line.startswith("| `")]
    written = set()
    for line in table:
        for cell in re.findall(r"`([^`]+)`", line.split(" | ")[0]):
            parsed = parse_command(cell.replace("\\|", "|").replace("<1|2|3>", "1").replace("<id>", "0")
                                   .replace("<query>", "x").replace("<text>", "x").replace("<start>", "a")
                                   .replace("<end>", "b"))
            assert not hasattr(parsed, "message"), (cell, parsed)
            written.add(parsed.kind)
    assert written == set(command_spec.KEYWORDS)
    valid = re.search(r'from: (.*?)\n- ', section("info"), re.S).group(1)
    assert re.findall(r'"([^"]+)"', valid) == list(command_spec.KEYWORDS)


def _infos() -> list[dict]:
    text = "The json module encodes JSON. " + "Filler sentence about nothing. " * 80
    corpus = Corpus([Document("json", "json", "https://docs.python.org/3/library/json.html", text)], name="tiny")
    browser = Browser(LocalBackend(corpus, in_memory_index(corpus, "bm25")),
                      BrowserConfig(window_chars=300, candidates=CandidateConfig()))
    browser.reset("What does json do?")
    out = [browser.info()]
    for action in ("Search json", "Clicked on link 0", "Scrolled down 1", "Quote: The json module encodes JSON.",
                   "End: Answer", "It encodes JSON [1]."):
        browser.step(action)
        assert browser.state.error is None, (action, browser.state.error)
        out.append(browser.info())
    return out


def test_the_spec_lists_every_info_key_and_only_those():
    documented = set(re.findall(r"^- `(\w+)`", section("info"), re.M))
    infos = _infos()
    assert {i["phase"] for i in infos} == {"browse", "answer", "done"}
    assert {i["view"] for i in infos} == {"none", "results", "document"}
    returned = set().union(*infos)
    assert returned == documented
    always = set.intersection(*(set(i) for i in infos))
    assert always == documented - OPTIONAL


def test_the_spec_limits_are_the_browser_defaults():
    c = BrowserConfig()
    assert (c.max_query_chars, c.max_quote_chars, c.max_quotes, c.max_answer_chars) == (
        command_spec.MAX_QUERY_CHARS, command_spec.MAX_QUOTE_CHARS, command_spec.MAX_QUOTES,
        command_spec.MAX_ANSWER_CHARS)
    assert f"at most {command_spec.MAX_QUERY_CHARS} chars" in section("Commands")
    assert _infos()[0]["limits"] == {"max_query_chars": c.max_query_chars, "max_quote_chars": c.max_quote_chars,
                                     "max_quotes": c.max_quotes, "max_answer_chars": c.max_answer_chars}
