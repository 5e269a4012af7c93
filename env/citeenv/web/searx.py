"""A client for a SearxNG-compatible JSON search endpoint.

    GET {base}/search?q=<query>&format=json  ->  {"query": ..., "results": [{"title", "url", "content"}, ...]}

`citeagent serve` answers the same format for a local corpus (and adds an optional integer
"offset", where in the opened page the hit is), so local and web search share this client.
The endpoint is fetched under the same guard as pages; its answer is hostile input like any page.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import urlencode

from citeenv.backends import BrowserError, SearchResult
from citeenv.documents import normalize_ws
from citeenv.safe_url import safe_http_url
from citeenv.unicode_text import without_lone_surrogates
from citeenv.web.fetch import Fetcher
from citeenv.web.html import strip_invisible

JSON_TYPES = ("application/json", "text/json", "application/javascript")


@dataclass
class SearxConfig:
    max_results: int = 50
    max_title_chars: int = 200
    max_snippet_chars: int = 500
    max_query_chars: int = 1000


class SearxClient:
    def __init__(self, base_url: str, fetcher: Fetcher, config: SearxConfig | None = None):
        self.base_url = base_url.rstrip("/")
        self.fetcher = fetcher
        self.config = config or SearxConfig()

    def search_url(self, query: str, k: int) -> str:
        return f"{self.base_url}/search?" + urlencode({"q": query, "format": "json", "k": k})

    def search(self, query: str, k: int = 10) -> list[SearchResult]:
        query = normalize_ws(without_lone_surrogates(query))  # a lone surrogate cannot be url-encoded
        if not query:
            raise BrowserError("the search query is empty")
        if len(query) > self.config.max_query_chars:
            raise BrowserError(f"the search query is longer than {self.config.max_query_chars} characters")
        k = max(1, min(int(k), self.config.max_results))
        fetched = self.fetcher.fetch(self.search_url(query, k), accept=JSON_TYPES)
        return parse_results(fetched.text, fetched.url, k, self.config)


def parse_results(text: str, endpoint_url: str, k: int, config: SearxConfig | None = None) -> list[SearchResult]:
    """SearchResults from a SearxNG JSON answer; malformed entries are skipped, a malformed
    answer is a BrowserError."""
    config = config or SearxConfig()
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        raise BrowserError("the search engine sent an answer that is not valid JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("results"), list):
        raise BrowserError('the search engine\'s answer has no "results" list')
    results: list[SearchResult] = []
    seen: set[tuple[str, int]] = set()
    for item in data["results"]:
        if len(results) >= k:
            break
        if not isinstance(item, dict):
            continue
        url = safe_http_url(item.get("url"), endpoint_url)
        if url is None:
            continue
        offset = item.get("offset", -1)
        offset = offset if isinstance(offset, int) and not isinstance(offset, bool) and offset >= 0 else -1
        if (url, offset) in seen:
            continue
        seen.add((url, offset))
        title = _clean(item.get("title"), config.max_title_chars) or url
        snippet = _clean(item.get("content"), config.max_snippet_chars)
        results.append(SearchResult(title=title, url=url, snippet=snippet, offset=offset))
    return results


def _clean(value, limit: int) -> str:
    if not isinstance(value, str):
        return ""
    s = normalize_ws(strip_invisible(value))
    return s if len(s) <= limit else s[: limit - 3].rstrip() + "..."
