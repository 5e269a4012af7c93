"""Choosing what the browser talks to from command-line options: a local corpus index or the web."""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass
class BackendOptions:
    corpus: str = "pydocs"
    search: str = "bm25"  # bm25 | dense | hybrid
    web: bool = False
    search_url: str | None = None  # SearxNG-compatible endpoint for --web
    allow_private: bool = False  # let --web reach loopback/private addresses (local servers)
    build_if_missing: bool = True
    connect_timeout: float = 5.0  # for checking, before any episode, that the search endpoint answers


def add_backend_args(p) -> None:
    p.add_argument("--corpus", default="pydocs", help="corpus name (pydocs, hotpotqa, hotpotqa:<id>, hf:<name>) or a JSONL path; default pydocs")
    p.add_argument("--search", default="bm25", choices=["bm25", "dense", "hybrid"], help="retrieval over the local corpus")
    p.add_argument("--web", action="store_true", help="browse the live web instead of a local corpus")
    p.add_argument("--search-url", default=None, help="SearxNG-compatible search endpoint for --web (or $CITEAGENT_SEARCH_URL)")
    p.add_argument("--allow-private", action="store_true", help="with --web, let pages link to loopback/private addresses (the search endpoint's own host is always allowed)")


def options_from_args(args) -> BackendOptions:
    return BackendOptions(
        corpus=args.corpus, search=args.search, web=args.web,
        search_url=args.search_url or os.environ.get("CITEAGENT_SEARCH_URL"), allow_private=args.allow_private,
    )


def make_backend(opts: BackendOptions):
    if opts.web:
        from citeenv.web.backend import make_web_backend

        if not opts.search_url:
            raise ValueError(
                "--web needs a search endpoint: pass --search-url http://HOST/ (any SearxNG-compatible JSON "
                "endpoint, or `citeagent serve --corpus pydocs` for a local one) or set CITEAGENT_SEARCH_URL."
            )
        backend = make_web_backend(opts.search_url, allow_private=opts.allow_private)
        check_reachable(opts.search_url, opts.connect_timeout)
        return backend
    from citeenv.index import open_index
    from citeenv.local import LocalBackend

    corpus, searcher = open_index(opts.corpus, kind=opts.search, build_if_missing=opts.build_if_missing)
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
