"""A browsing scaffold for an LM that has not been trained to browse.

It narrows which *command* is allowed at each step (search first, open a few results, quote on
each page, go back, then answer) while the model still writes every argument: the query, which
link, the quote (constrained to verbatim page text) and the answer. GopherCite's untrained
setting works the same way: the model chooses the evidence and writes the claim; the search
procedure is fixed. Behaviour cloning and PPO train the unguided policy; the scaffold is off there.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class GuideConfig:
    open_results: int = 2  # results to read before answering
    quotes_per_page: int = 1
    min_quote_chars: int = 40  # a quote of whole words, at least this long (or to the window's end)


def guide(info: dict, config: GuideConfig | None = None) -> dict:
    """A copy of `info` whose `valid_commands` (and link ids) allow only the scaffold's next step."""
    c = config or GuideConfig()
    if info.get("phase") == "answer":
        return dict(info, require_citation=True)  # an answer must cite one of its quotes
    if info.get("phase") != "browse":
        return info
    past = info.get("past_actions", [])
    quotes = info.get("quotes", [])
    out = dict(info)

    def only(*commands: str, link_ids: list[int] | None = None) -> dict:
        allowed = [k for k in commands if k in info["valid_commands"]]
        out["valid_commands"] = allowed or list(info["valid_commands"])
        if link_ids is not None:
            out["link_ids"] = link_ids
        return out

    if not any(a.startswith("Search ") for a in past):
        return only("Search")
    view = info.get("view")
    if view == "document":
        url = info["page"]["url"]
        quoted_here = sum(1 for q in quotes if q["url"] == url)
        if quoted_here < c.quotes_per_page and not past[-1].startswith("Quote:"):
            out["min_quote_chars"] = c.min_quote_chars
            return only("Quote:")
        return only("Back", "End: Answer")
    if view == "results":
        visited = set(info.get("visited", []))
        opened = sum(1 for a in past if a.startswith("Clicked on link"))
        fresh = [r["id"] for r in info.get("results", []) if r["url"] not in visited]
        if opened < c.open_results and fresh:
            return only("Clicked on link", link_ids=fresh)
    return only("End: Answer") if quotes else only("Search", "End: Decline")
