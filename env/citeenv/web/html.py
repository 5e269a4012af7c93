"""Rendering a fetched page into a `Page`: a title, readable text, and links at char offsets.

The page is hostile content. Scripts, styles and other non-text parts are dropped, never run;
text a reader could not see (hidden elements) is dropped too, since it is a cheap place to hide
instructions for an agent; control and bidi-override characters are removed; the text and the
number of links are bounded. Only http(s) links are kept.

The parser is libxml2's, through lxml: it stays linear on malformed markup (unterminated tags,
deep nesting) where Python's html.parser, and Beautiful Soup's tree building over any parser,
grow quadratically (scripts/bench_html_parsers.py measures them). A page nesting deeper than
libxml2's limit (2048 elements) is cut there, with the cut marked. Rendering also stops at a
deadline, so parsing and rendering a hostile page cannot stretch one browser step.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

import time

import lxml.html
from lxml import etree

from citeenv.backends import BrowserError, Page
from citeenv.documents import Link, normalize_ws
from citeenv.safe_url import safe_http_url
from citeenv.web.fetch import HTML_TYPES, Fetched


@dataclass
class RenderConfig:
    max_chars: int = 300_000  # text beyond this is cut (a marker line says so)
    max_links: int = 1000
    max_title_chars: int = 200
    max_seconds: float = 5.0  # rendering stops here (and says so), whatever the caller's deadline


TRUNCATED_MARK = "[... the rest of the page was cut ...]"
SLOW_MARK = "[... the page took too long to render; the rest was cut ...]"
_CHECK_EVERY = 256  # tree nodes between two looks at the clock

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


def render(fetched: Fetched, config: RenderConfig | None = None, deadline: float | None = None) -> Page:
    """The Page for a fetched body: HTML is rendered, plain text is shown as it is. `deadline`
    (time.monotonic()) bounds rendering; a page not rendered by then is cut there."""
    if fetched.content_type in HTML_TYPES:
        return render_html(fetched.text, fetched.url, config, deadline)
    return render_text(fetched.text, fetched.url, config)


def render_text(text: str, url: str, config: RenderConfig | None = None) -> Page:
    config = config or RenderConfig()
    text = _INVISIBLE.sub("", text.replace("\r\n", "\n").replace("\r", "\n")).strip("\n")
    if len(text) > config.max_chars:
        text = text[: config.max_chars] + "\n\n" + TRUNCATED_MARK
    first_line = next((line.strip() for line in text.splitlines() if line.strip()), "")
    title = _bound(first_line or _url_title(url), config.max_title_chars)
    return Page(title=title, url=url, text=text, links=[])


def render_html(html: str, url: str, config: RenderConfig | None = None, deadline: float | None = None) -> Page:
    config = config or RenderConfig()
    own = time.monotonic() + config.max_seconds
    deadline = own if deadline is None else min(deadline, own)
    root, cut_deep = _parse(html)
    if root is None:
        return Page(title=_bound(_url_title(url), config.max_title_chars), url=url, text="", links=[])
    base = _base_url(root, url)
    out = _TextBuilder(config.max_chars)
    links = _LinkCollector(base, url, config.max_links)
    finished = _walk(root, out, links, deadline)
    text = out.text()
    kept = links.links(text)
    mark = SLOW_MARK if not finished else TRUNCATED_MARK if out.truncated or cut_deep else ""
    if mark:
        text += ("\n\n" if text else "") + mark
    title = _title(root, url, config.max_title_chars)
    return Page(title=title, url=url, text=text, links=kept, doc_id=_doc_id(root))


def _parse(html: str):
    """(the document's root element or None when it has none, whether it was cut for nesting too
    deeply). The text goes to libxml2 as UTF-8: lone surrogates become "?", NULs are dropped."""
    data = html.replace("\x00", "").encode("utf-8", "replace")
    if not data.strip():
        return None, False
    parser = lxml.html.HTMLParser(encoding="utf-8", huge_tree=True, remove_comments=True, remove_pis=True,
                                  no_network=True)
    try:
        root = etree.fromstring(data, parser)
    except (etree.LxmlError, ValueError):  # recovery mode accepts anything we have found; this is a last gate
        raise BrowserError("could not read the page's HTML") from None
    cut_deep = any(e.type_name == "ERR_RESOURCE_LIMIT" for e in parser.error_log)
    return root, cut_deep


# -- walking the tree -----------------------------------------------------------------------

def _walk(root, out: "_TextBuilder", links: "_LinkCollector", deadline: float | None) -> bool:
    """Depth-first over the tree with an explicit stack (hostile nesting cannot overflow it).
    Stack entries are text (an element's text or a child's tail) or (element, leaving). False
    when the deadline stopped the walk."""
    stack: list = [(root, False)]
    pre_depth = 0
    list_counters: list[int | None] = []  # None for <ul>, the next number for <ol>
    steps = 0
    while stack and not out.full:
        steps += 1
        if deadline is not None and steps % _CHECK_EVERY == 0 and time.monotonic() > deadline:
            return False
        entry = stack.pop()
        if isinstance(entry, str):
            if pre_depth:
                out.preformatted(entry)
            else:
                out.inline(entry)
            continue
        node, leaving = entry
        if not isinstance(node.tag, str):
            continue  # a comment, processing instruction or entity left in the tree
        name = node.tag  # libxml2's HTML parser gives tag names in lower case
        if leaving:
            if name == "pre":
                pre_depth -= 1
            elif name in ("ul", "ol"):
                list_counters.pop()
            elif name == "a":
                links.close(node, out)
            _block_break(name, out)
            continue
        if node is not root and _skipped(node, name):
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
        for child in reversed(list(node)):  # lxml walks children backwards slowly; a list does not
            if child.tail:
                stack.append(child.tail)
            stack.append((child, False))
        if node.text:
            stack.append(node.text)
    return True


def _skipped(node, name: str) -> bool:
    if name in _DROP or name in _CHROME:
        return True
    if not node.keys():  # most elements have no attributes; this skips building the attribute view
        return False
    attrs = node.attrib
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


def _ol_start(node) -> int:
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
        self.open_stack: list[tuple[object, list, str | None]] = []

    def inside_link(self) -> bool:
        return any(href for _, _, href in self.open_stack)

    def open(self, node, out: _TextBuilder) -> None:
        # A link inside a link (the parser does not untangle them) is text of the outer one, so
        # link spans never overlap.
        href = None if self.inside_link() else safe_http_url(node.get("href"), self.base)
        span = [None]
        self.open_stack.append((node, span, href))
        if href is not None:
            out.waiting_links.append(span)

    def close(self, node, out: _TextBuilder) -> None:
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


def _base_url(root, url: str) -> str:
    base = next((b for b in root.iter("base") if b.get("href")), None)
    if base is not None:
        resolved = safe_http_url(base.get("href"), url)
        if resolved:
            return resolved
    return url


# -- title, doc id --------------------------------------------------------------------------

def _title(root, url: str, limit: int) -> str:
    title = ""
    for tag in ("title", "h1"):
        node = next(root.iter(tag), None)
        title = normalize_ws(_INVISIBLE.sub("", node.text_content())) if node is not None else ""
        if title:
            break
    return _bound(title or _url_title(url), limit)


def _doc_id(root) -> str:
    """The corpus document id a page served by citeenv.web.serve carries, else ""."""
    meta = next((m for m in root.iter("meta") if m.get("name") == "citeagent:doc-id"), None)
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
