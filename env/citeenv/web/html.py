"""Rendering a fetched page into a `Page`: a title, readable text, and links at char offsets.

The page is hostile content. Scripts, styles and other non-text parts are dropped, never run;
text a reader could not see (hidden elements) is dropped too, since it is a cheap place to hide
instructions for an agent; control and bidi-override characters are removed; the text and the
number of links are bounded. Only http(s) links are kept.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from bs4 import BeautifulSoup, Comment, NavigableString, Tag
from bs4.element import CData, Declaration, Doctype, ProcessingInstruction

from citeenv.backends import BrowserError, Page
from citeenv.documents import Link, normalize_ws
from citeenv.safe_url import safe_http_url
from citeenv.web.fetch import HTML_TYPES, Fetched


@dataclass
class RenderConfig:
    max_chars: int = 300_000  # text beyond this is cut (a marker line says so)
    max_links: int = 1000
    max_title_chars: int = 200


TRUNCATED_MARK = "[... the rest of the page was cut ...]"

# Never text: code, styling, embedded documents and widgets.
_DROP = {"script", "style", "noscript", "template", "iframe", "frame", "frameset", "object", "embed",
         "applet", "svg", "math", "canvas", "audio", "video", "map", "head", "select", "button",
         "input", "textarea", "dialog", "title", "meta", "link", "base"}
# Site chrome rather than content. (<aside> is not here: documentation puts footnotes and notes in it.)
_CHROME = {"nav", "footer"}
_CHROME_ROLES = {"navigation", "search", "menu", "menubar", "toolbar", "complementary", "contentinfo"}
_HIDDEN_STYLE = re.compile(r"display\s*:\s*none|visibility\s*:\s*hidden", re.I)

_BLANK_LINE = {"p", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "blockquote", "ul", "ol", "dl", "table",
               "figure", "hr", "section", "article", "main", "header", "details", "address", "form", "fieldset"}
_NEW_LINE = {"div", "li", "dt", "dd", "tr", "caption", "figcaption", "summary", "legend", "option", "center",
             "tbody", "thead", "tfoot", "body", "html"}
_CELL = {"td", "th"}

# C0/C1 controls (tab and newline are kept), bidi overrides/isolates, zero-width characters.
_INVISIBLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]")
_WS = re.compile(r"\s+")


def strip_invisible(text: str) -> str:
    """text without control, bidi-override and zero-width characters (tab and newline stay)."""
    return _INVISIBLE.sub("", text)


def render(fetched: Fetched, config: RenderConfig | None = None) -> Page:
    """The Page for a fetched body: HTML is rendered, plain text is shown as it is."""
    if fetched.content_type in HTML_TYPES:
        return render_html(fetched.text, fetched.url, config)
    return render_text(fetched.text, fetched.url, config)


def render_text(text: str, url: str, config: RenderConfig | None = None) -> Page:
    config = config or RenderConfig()
    text = _INVISIBLE.sub("", text.replace("\r\n", "\n").replace("\r", "\n")).strip("\n")
    if len(text) > config.max_chars:
        text = text[: config.max_chars] + "\n\n" + TRUNCATED_MARK
    first_line = next((line.strip() for line in text.splitlines() if line.strip()), "")
    title = _bound(first_line or _url_title(url), config.max_title_chars)
    return Page(title=title, url=url, text=text, links=[])


def render_html(html: str, url: str, config: RenderConfig | None = None) -> Page:
    config = config or RenderConfig()
    try:
        soup = BeautifulSoup(html, "html.parser")
    except Exception as e:  # the parser is lenient; this is for markup it gives up on
        raise BrowserError(f"could not read the page's HTML ({type(e).__name__})") from None
    base = _base_url(soup, url)
    out = _TextBuilder(config.max_chars)
    links = _LinkCollector(base, url, config.max_links)
    _walk(soup, out, links)
    text = out.text()
    kept = links.links(text)
    if out.truncated:
        text += "\n\n" + TRUNCATED_MARK
    title = _title(soup, url, config.max_title_chars)
    return Page(title=title, url=url, text=text, links=kept, doc_id=_doc_id(soup))


# -- walking the tree -----------------------------------------------------------------------

def _walk(soup: BeautifulSoup, out: "_TextBuilder", links: "_LinkCollector") -> None:
    """Depth-first over the tree with an explicit stack (hostile nesting cannot overflow it)."""
    stack: list[tuple[object, bool]] = [(soup, False)]
    pre_depth = 0
    list_counters: list[int | None] = []  # None for <ul>, the next number for <ol>
    while stack and not out.full:
        node, leaving = stack.pop()
        if isinstance(node, NavigableString):
            if type(node) in (Comment, CData, Declaration, Doctype, ProcessingInstruction):
                continue
            if pre_depth:
                out.preformatted(str(node))
            else:
                out.inline(str(node))
            continue
        if not isinstance(node, Tag):
            continue
        name = node.name.lower() if node.name else ""
        if leaving:
            if name == "pre":
                pre_depth -= 1
            elif name in ("ul", "ol"):
                list_counters.pop()
            elif name == "a":
                links.close(node, out)
            _block_break(name, out)
            continue
        if node is not soup and _skipped(node, name):
            continue
        _block_break(name, out)
        if name == "br":
            out.newline()
        elif name == "pre":
            pre_depth += 1
        elif name in ("ul", "ol"):
            list_counters.append(_ol_start(node) if name == "ol" else None)
        elif name == "li" and list_counters:
            n = list_counters[-1]
            out.marker("- " if n is None else f"{n}. ")
            if n is not None:
                list_counters[-1] = n + 1
        elif name in _CELL:
            out.cell()
        elif name == "img" and links.inside_link():
            out.inline(" " + _bound(node.get("alt") or "", 100) + " ")  # the anchor of an image link
        elif name == "a":
            links.open(node, out)
        stack.append((node, True))
        stack.extend((child, False) for child in reversed(node.contents))


def _skipped(node: Tag, name: str) -> bool:
    if name in _DROP or name in _CHROME:
        return True
    attrs = node.attrs or {}
    if "hidden" in attrs or str(attrs.get("aria-hidden", "")).lower() == "true":
        return True
    if _HIDDEN_STYLE.search(str(attrs.get("style", ""))):
        return True
    role = attrs.get("role")
    return isinstance(role, str) and role.lower() in _CHROME_ROLES


def _block_break(name: str, out: "_TextBuilder") -> None:
    if name in _BLANK_LINE:
        out.paragraph()
    elif name in _NEW_LINE:
        out.newline_soft()


def _ol_start(node: Tag) -> int:
    try:
        return max(0, min(int(str(node.get("start", "1")).strip()), 10**6))
    except ValueError:
        return 1


# -- the text -------------------------------------------------------------------------------

class _TextBuilder:
    """Accumulates the page text. Separators (spaces, line breaks) are held back and written only
    before the next visible text, so the text never starts or ends with one and link spans start
    and end on visible characters."""

    def __init__(self, max_chars: int):
        self.max_chars = max_chars
        self.parts: list[str] = []
        self.size = 0
        self.breaks = 0  # newlines owed before the next text (0, 1 or 2)
        self.space = False  # a space owed before the next text
        self.cell_gap = False
        self.pre_newlines = 0  # newlines seen inside <pre> since the last text
        self.full = False
        self.truncated = False
        self.waiting_links: list[list] = []  # open links whose start is not known yet

    def inline(self, raw: str) -> None:
        s = _WS.sub(" ", _INVISIBLE.sub("", raw))
        if not s.strip():
            if s:
                self.space = True
            return
        if s[0] == " ":
            self.space = True
        self._write(s.strip(" "))
        if s[-1] == " ":
            self.space = True

    def preformatted(self, raw: str) -> None:
        s = _INVISIBLE.sub("", raw.replace("\r\n", "\n").replace("\r", "\n"))
        if not s:
            return
        for i, line in enumerate(s.split("\n")):
            if i:
                self.pre_newlines += 1
            if line:
                # A block break and the newlines inside <pre> overlap; the larger one wins, so the
                # newline right after <pre> does not add a line (as in browsers).
                if self.size:
                    self.breaks = max(self.breaks, self.pre_newlines)
                self._write(line, keep_space=True)

    def marker(self, text: str) -> None:
        self.newline_soft()
        self._write(text.rstrip())
        self.space = True

    def cell(self) -> None:
        if self.size and not self.breaks:
            self.cell_gap = True

    def newline(self) -> None:
        if self.size:
            self.breaks = min(2, self.breaks + 1)

    def newline_soft(self) -> None:
        if self.size:
            self.breaks = max(self.breaks, 1)

    def paragraph(self) -> None:
        self.pre_newlines = 0
        if self.size:
            self.breaks = max(self.breaks, 2)

    def _write(self, s: str, keep_space: bool = False) -> None:
        if self.full or not s:
            return
        if self.size:
            if self.breaks:
                sep = "\n" * self.breaks
            elif self.cell_gap:
                sep = " | "
            elif self.space and not keep_space:
                sep = " "
            else:
                sep = ""
            self.parts.append(sep)
            self.size += len(sep)
        self.breaks, self.space, self.cell_gap, self.pre_newlines = 0, False, False, 0
        for link in self.waiting_links:
            if link[0] is None:
                link[0] = self.size
        room = self.max_chars - self.size
        if len(s) > room:
            s, self.full, self.truncated = s[:room], True, True
        self.parts.append(s)
        self.size += len(s)

    def text(self) -> str:
        return "".join(self.parts).rstrip()


# -- links ----------------------------------------------------------------------------------

class _LinkCollector:
    def __init__(self, base: str, page_url: str, max_links: int):
        self.base = base
        self.page = page_url.split("#", 1)[0]
        self.max_links = max_links
        self.spans: list[tuple[int, int, str]] = []
        self.seen: set[str] = set()
        self.open_stack: list[tuple[Tag, list, str | None]] = []

    def inside_link(self) -> bool:
        return any(href for _, _, href in self.open_stack)

    def open(self, node: Tag, out: _TextBuilder) -> None:
        # A link inside a link (the parser does not untangle them) is text of the outer one, so
        # link spans never overlap.
        href = None if self.inside_link() else safe_http_url(node.get("href"), self.base)
        span = [None]
        self.open_stack.append((node, span, href))
        if href is not None:
            out.waiting_links.append(span)

    def close(self, node: Tag, out: _TextBuilder) -> None:
        if not self.open_stack or self.open_stack[-1][0] is not node:
            return
        _, span, href = self.open_stack.pop()
        if href is None:
            return
        out.waiting_links.remove(span)
        start, end = span[0], out.size
        if start is None or end <= start or len(self.spans) >= self.max_links:
            return  # a link with no visible text cannot be shown or clicked
        if href.split("#", 1)[0] == self.page or href in self.seen:
            return  # in-page anchors and repeats add nothing to click on
        self.seen.add(href)
        self.spans.append((start, end, href))

    def links(self, text: str) -> list[Link]:
        return [Link(text=text[s:e], url=href, start=s, end=e) for s, e, href in self.spans if e <= len(text)]


def _base_url(soup: BeautifulSoup, url: str) -> str:
    base = soup.find("base", href=True)
    if base is not None:
        resolved = safe_http_url(base.get("href"), url)
        if resolved:
            return resolved
    return url


# -- title, doc id --------------------------------------------------------------------------

def _title(soup: BeautifulSoup, url: str, limit: int) -> str:
    tag = soup.find("title")
    title = normalize_ws(_INVISIBLE.sub("", tag.get_text())) if tag is not None else ""
    if not title:
        h1 = soup.find("h1")
        title = normalize_ws(_INVISIBLE.sub("", h1.get_text())) if h1 is not None else ""
    return _bound(title or _url_title(url), limit)


def _doc_id(soup: BeautifulSoup) -> str:
    """The corpus document id a page served by env.web.serve carries, else ""."""
    meta = soup.find("meta", attrs={"name": "citeagent:doc-id"})
    value = meta.get("content") if meta is not None else None
    return _bound(_INVISIBLE.sub("", value), 200) if isinstance(value, str) else ""


def _url_title(url: str) -> str:
    try:
        parts = urlsplit(url)
    except ValueError:  # a corpus document's url is not checked the way a fetched one is
        return url
    tail = parts.path.rstrip("/").rsplit("/", 1)[-1]
    return tail or parts.netloc or url


def _bound(s: str, limit: int) -> str:
    s = normalize_ws(s)
    return s if len(s) <= limit else s[: limit - 3].rstrip() + "..."
