"""Turning a Page into what the agent sees: fixed windows of text with numbered links, and the
whitespace-normalised view of the page that quotes are matched against."""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

from citeenv.backends import Page

LINK_OPEN, LINK_SEP, LINK_CLOSE = "\u3010", "\u2020", "\u3011"  # 【id†anchor】 as in WebGPT
_WS = re.compile(r"\s+")
# Page text may contain the link-marker characters itself, which would let a hostile page draw
# fake links; in rendered text they are replaced by look-alikes that mean nothing to the browser.
_DEFANG = str.maketrans({LINK_OPEN: "[", LINK_CLOSE: "]", LINK_SEP: "+"})


def defang(text: str) -> str:
    return text.translate(_DEFANG)


@dataclass
class NormalizedText:
    """`text` with every whitespace run collapsed to one space, plus a map back to the original
    offsets, so a quote found in the normalised text can be located in the page."""

    text: str
    offsets: list[int]  # offsets[i] = index in the original of normalised char i

    @classmethod
    def of(cls, original: str) -> "NormalizedText":
        out, offs = [], []
        pos = 0
        for m in _WS.finditer(original):
            seg = original[pos:m.start()]
            out.append(seg)
            offs.extend(range(pos, m.start()))
            if out and (seg or offs):
                out.append(" ")
                offs.append(m.start())
            pos = m.end()
        out.append(original[pos:])
        offs.extend(range(pos, len(original)))
        text = "".join(out)
        # strip a trailing space produced by trailing whitespace
        if text.endswith(" "):
            text, offs = text[:-1], offs[:-1]
        return cls(text, offs)

    def span(self, start: int, end: int) -> tuple[int, int]:
        """Original [start, end) of normalised [start, end)."""
        return self.offsets[start], self.offsets[end - 1] + 1

    def find_ignoring_case(self, needle: str, start: int = 0) -> int:
        """The normalised offset of the first case-insensitive match of `needle` at or after
        normalised offset `start`, or -1. Lower-casing can lengthen a character ("İ" becomes two),
        so the match is found in the lowered text and mapped back to an offset in `text`."""
        lowered, to_text, from_text = self._lowered
        start = min(max(start, 0), len(self.text))
        pos = lowered.find(needle.lower(), from_text[start] if from_text else start)
        if pos < 0:
            return -1
        return to_text[pos] if to_text else pos

    @cached_property
    def _lowered(self) -> tuple[str, list[int], list[int]]:
        """The lowered text with maps between its offsets and `text`'s (empty maps when every
        character lowers to exactly one, the common case)."""
        lowered = self.text.lower()
        if len(lowered) == len(self.text):  # no character grew, so offsets are shared
            return lowered, [], []
        to_text, from_text = [], []
        for i, ch in enumerate(self.text):
            from_text.append(len(to_text))
            to_text.extend([i] * len(ch.lower()))
        from_text.append(len(to_text))
        return lowered, to_text, from_text


class PageView:
    """A page split into windows of about `window_chars`, cut at line or word boundaries."""

    def __init__(self, page: Page, window_chars: int = 1200, max_links_listed: int = 20):
        self.page = page
        self.window_chars = window_chars
        self.max_links_listed = max_links_listed
        self.bounds = self._cut(page.text, window_chars)

    @staticmethod
    def _cut(text: str, size: int) -> list[int]:
        bounds = [0]
        n = len(text)
        while bounds[-1] + size < n:
            lo, hi = bounds[-1], bounds[-1] + size
            cut = text.rfind("\n", lo + size // 2, hi)
            if cut < 0:
                cut = text.rfind(" ", lo + size // 2, hi)
            cut = hi if cut < 0 else cut + 1
            bounds.append(cut)
        bounds.append(n)
        return bounds

    @property
    def n_windows(self) -> int:
        return max(1, len(self.bounds) - 1)

    def window_of(self, offset: int) -> int:
        for i in range(self.n_windows):
            if offset < self.bounds[i + 1]:
                return i
        return self.n_windows - 1

    def window_span(self, i: int) -> tuple[int, int]:
        return self.bounds[i], self.bounds[min(i + 1, len(self.bounds) - 1)]

    @cached_property
    def normalized(self) -> NormalizedText:
        return NormalizedText.of(self.page.text)

    def links_in(self, i: int) -> list[int]:
        lo, hi = self.window_span(i)
        inline = [k for k, lk in enumerate(self.page.links) if lo <= lk.start < hi and lk.end <= hi]
        return inline + self.floating_links()

    def floating_links(self) -> list[int]:
        """Links with no position in the text; listed under every window."""
        return [k for k, lk in enumerate(self.page.links) if lk.start < 0][: self.max_links_listed]

    def render(self, i: int) -> str:
        lo, hi = self.window_span(i)
        text = self.page.text
        parts, pos = [], lo
        for k, lk in enumerate(self.page.links):
            if lo <= lk.start < hi and lk.end <= hi and lk.start >= pos:
                parts.append(text[pos:lk.start].translate(_DEFANG))
                parts.append(f"{LINK_OPEN}{k}{LINK_SEP}{text[lk.start:lk.end].translate(_DEFANG)}{LINK_CLOSE}")
                pos = lk.end
        parts.append(text[pos:hi].translate(_DEFANG))
        body = "".join(parts).strip("\n")
        floating = self.floating_links()
        if floating:
            body += "\nLinks: " + " ".join(
                f"{LINK_OPEN}{k}{LINK_SEP}{self.page.links[k].text[:60].translate(_DEFANG)}{LINK_CLOSE}" for k in floating)
        return body

    def quotable(self, i: int) -> str:
        lo, hi = self.window_span(i)
        return _WS.sub(" ", self.page.text[lo:hi]).strip()
