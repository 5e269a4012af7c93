"""Choosing what the browser talks to from command-line options: a local corpus index or the web."""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from urllib.parse import urlsplit


# citeenv.index.SEARCH_KINDS, written out: importing citeenv.index loads the search libraries
# just to build a parser.
SEARCH_KINDS = ("bm25", "dense", "hybrid")


def _search_url_from_env() -> str | None:
    return os.environ.get("CITEAGENT_SEARCH_URL") or None


@dataclass
class BackendOptions:
    """What the browser talks to; the flags of the commands that browse (ask, browse)."""

    _argument_group_name = "where the browser looks"  # HfArgumentParser's heading for these flags

    corpus: str = field(default="pydocs", metadata={"help": (
        "corpus name (pydocs, hotpotqa, hotpotqa:<id>, hf:<name>) or a JSONL path")})
    search: str = field(default="bm25", metadata={"help": "retrieval over the local corpus", "choices": SEARCH_KINDS})
    web: bool = field(default=False, metadata={"action": "store_true",
                                               "help": "browse the live web instead of a local corpus"})
    search_url: str | None = field(default_factory=_search_url_from_env, metadata={"help": (
        "SearxNG-compatible search endpoint for --web (or $CITEAGENT_SEARCH_URL)")})
    allow_private: bool = field(default=False, metadata={"action": "store_true", "help": (
        "with --web, let pages link to loopback/private addresses (the search endpoint's own host is always "
        "allowed)")})


def make_backend(opts: BackendOptions, *, build_if_missing: bool = True, connect_timeout: float = 5.0):
    """The backend opts describe. A local index is built on first use unless build_if_missing is
    False; a search endpoint must accept a connection within connect_timeout seconds."""
    if opts.web:
        from citeenv.web.backend import make_web_backend

        if not opts.search_url:
            raise ValueError(
                "--web needs a search endpoint: pass --search-url http://HOST/ (any SearxNG-compatible JSON "
                "endpoint, or `citeagent serve --corpus pydocs` for a local one) or set CITEAGENT_SEARCH_URL."
            )
        backend = make_web_backend(opts.search_url, allow_private=opts.allow_private)
        check_reachable(opts.search_url, connect_timeout)
        return backend
    from citeenv.index import open_index
    from citeenv.local import LocalBackend

    corpus, searcher = open_index(opts.corpus, kind=opts.search, build_if_missing=build_if_missing)
    return LocalBackend(corpus, searcher)


def check_reachable(search_url: str, timeout: float) -> None:
    """Raise a ValueError naming the endpoint when nothing accepts a connection there. Without
    this check every search fails inside the episode, and the agent 'declines to answer' a
    question it never got to search for."""
    parts = urlsplit(search_url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname, port), timeout=timeout).close()
    except OSError as e:
        reason = e.strerror or str(e) or type(e).__name__
        raise ValueError(f"the search endpoint {search_url} could not be reached ({reason}). Start it (e.g. "
                         "`citeagent serve --corpus pydocs`) or check --search-url.") from None
