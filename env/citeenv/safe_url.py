"""The one rule for which urls may become links: absolute http(s) urls only.

Urls come from hostile places (web pages, search answers, corpus files, prediction files), and a
`javascript:`, `data:` or `vbscript:` url in an href runs code when clicked. Every page the project
writes or serves, and every link the browser keeps, goes through `safe_http_url`; anything it
refuses is shown as text, never as a link."""
from __future__ import annotations

import re
from urllib.parse import urljoin, urlsplit

MAX_URL_CHARS = 2048
# Browsers drop tab and newlines anywhere in a url ("java\nscript:" is javascript:), so they are
# dropped before the scheme is read; any other control character makes the url unusable.
_IGNORED_BY_BROWSERS = re.compile(r"[\t\n\r]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def safe_http_url(value, base: str | None = None) -> str | None:
    """`value` as an absolute http(s) url (resolved against `base` when relative), or None when
    it is anything else: another scheme, no host, control characters, malformed, or too long."""
    if not isinstance(value, str):
        return None
    url = _IGNORED_BY_BROWSERS.sub("", value.strip())
    if not url or len(url) > MAX_URL_CHARS or _CONTROL.search(url):
        return None
    try:
        if base is not None:
            url = urljoin(base, url)
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range or not a number
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    return url
