"""The live-web backend: search through a SearxNG-compatible endpoint, open pages through the
guarded fetcher and the HTML renderer. It implements env.backends.Backend, so the browser treats
it exactly like a local corpus."""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import replace

import time

import httpx

from citeenv.backends import BrowserError, Page, SearchResult
from citeenv.web.fetch import Fetcher, FetchPolicy
from citeenv.web.html import RenderConfig, render
from citeenv.web.searx import SearxClient


class WebBackend:
    def __init__(self, search_provider, fetcher: Fetcher | None = None, policy: FetchPolicy | None = None,
                 render_config: RenderConfig | None = None, cache_pages: int = 32, open_timeout: float | None = None):
        """search_provider: anything with search(query, k) -> list[SearchResult] (a SearxClient).
        fetcher: the guarded fetcher pages are opened with (built from `policy` when omitted).
        open_timeout: seconds one open (fetch, parse and render together) may take; by default the
        fetch policy's total_timeout. A page still rendering then is cut, and says so."""
        self.search_provider = search_provider
        self.fetcher = fetcher or Fetcher(policy or FetchPolicy())
        self.policy = self.fetcher.policy
        self.render_config = render_config or RenderConfig()
        self.cache_pages = cache_pages
        self.open_timeout = self.policy.total_timeout if open_timeout is None else open_timeout
        self._pages: OrderedDict[str, Page] = OrderedDict()

    def search(self, query: str, k: int = 10) -> list[SearchResult]:
        return self.search_provider.search(query, k)

    def open(self, url: str) -> Page:
        if url in self._pages:
            self._pages.move_to_end(url)
            return self._pages[url]
        deadline = time.monotonic() + self.open_timeout
        fetched = self.fetcher.fetch(url, deadline=deadline)
        if time.monotonic() >= deadline:
            raise BrowserError(f"timed out: the page took more than {self.open_timeout:g} s to fetch")
        page = render(fetched, self.render_config, deadline)
        if not page.text.strip():
            raise BrowserError("the page has no readable text")
        if self.cache_pages > 0:
            self._pages[url] = page
            while len(self._pages) > self.cache_pages:
                self._pages.popitem(last=False)
        return page

    def clear_cache(self) -> None:
        """Forget opened pages (e.g. at the start of an episode, so a page is fetched fresh)."""
        self._pages.clear()


def make_web_backend(search_url: str, allow_private: bool = False, allow_hosts: tuple[str, ...] = (),
                     policy: FetchPolicy | None = None, only_search_host: bool = False) -> WebBackend:
    """A WebBackend searching the SearxNG-compatible endpoint at search_url.

    The endpoint's own host:port is allow-listed (the user named it, and a local `citeagent serve`
    or SearxNG lives on loopback); pages the agent opens stay under the guard. With
    only_search_host=True nothing but the endpoint's host can be opened: a served corpus then
    cannot lead the agent onto the web through an off-corpus link."""
    try:
        endpoint = httpx.URL(search_url)
    except (httpx.InvalidURL, ValueError, TypeError) as e:
        raise ValueError(f"bad search url {search_url!r}: {e}") from None
    if endpoint.scheme not in ("http", "https") or not endpoint.host:
        raise ValueError(f"bad search url {search_url!r}: expected http(s)://HOST[:PORT][/PATH]")
    host = endpoint.raw_host.decode("ascii")
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    own = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    base = policy or FetchPolicy()
    policy = replace(base, allow_private=allow_private or base.allow_private,
                     allow_hosts=tuple(base.allow_hosts) + tuple(allow_hosts) + (own,),
                     only_hosts=(own,) if only_search_host else base.only_hosts)
    fetcher = Fetcher(policy)
    return WebBackend(SearxClient(search_url, fetcher), fetcher)
