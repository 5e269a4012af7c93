"""Which HTML parser stays linear on hostile markup: Beautiful Soup over html.parser, lxml and
html5lib, against libxml2 through lxml directly (what citeenv.web.html uses), on the inputs of
issue 19: '<a' * 50000 (100 KB), 120 KB of unterminated tags, deep nesting, and the fetcher's
2 MB body limit. Prints JSON.

    python scripts/bench_html_parsers.py [--cap-seconds 20] [--repeats 1]

Each input is parsed at doubling sizes; `growth_exponent` (from the two largest sizes run) reads
about 1 for a linear parser and about 2 for a quadratic one; `vs_lxml_at_issue_size` is the time
against lxml's in the same process. A parser stops at the first size over --cap-seconds, and
`projected_seconds_at_2MB` says what the 2 MB limit would take if its measured growth held.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, fields

import lxml.html
from lxml import etree

from citeenv.web.html import render_html


@dataclass
class BenchConfig:
    cap_seconds: float = 20.0  # no larger size is tried for a parser past this
    repeats: int = 1  # best of this many runs per measurement
    include_html5lib: bool = True


def _lxml(markup: str):
    return etree.fromstring(markup.encode("utf-8", "replace"), lxml.html.HTMLParser(encoding="utf-8", huge_tree=True))


def _soup(builder: str):
    from bs4 import BeautifulSoup

    return lambda markup: BeautifulSoup(markup, builder)


# name -> (unit repeated, the size issue 19 names). Each parser runs at doubling sizes from 1/8 of
# that size up to the fetcher's 2 MB body limit, stopping after the first run over --cap-seconds.
INPUTS = {
    "a_unterminated": ("<a", 100_000),  # render_html('<a' * 50000) took > 10 s
    "div_attr_unterminated": ("<div class='x' ", 120_000),  # the 22 s 'Clicked on link'
    "nested_div": ("<div>", 100_000),
    "paragraphs": ("<p>word</p>", 100_000),  # ordinary markup, for scale
}
LIMIT = 2_000_000
MIN_TIMED = 0.02  # seconds; growth is read only from runs at least this long


def sizes_for(issue_size: int) -> list[int]:
    sizes = [issue_size // 8]
    while sizes[-1] * 2 < LIMIT:
        sizes.append(sizes[-1] * 2)
    return sizes + [LIMIT]


def parsers(cfg: BenchConfig) -> dict:
    out = {"lxml_direct": _lxml, "bs4_html.parser": _soup("html.parser"), "bs4_lxml": _soup("lxml")}
    if cfg.include_html5lib:
        try:
            import html5lib  # noqa: F401

            out["bs4_html5lib"] = _soup("html5lib")
        except ImportError:
            pass
    out["render_html"] = lambda markup: render_html(markup, "https://bench.example/", deadline=float("inf"))
    return out


def timed(fn, markup: str, repeats: int) -> float:
    """CPU seconds of this thread (best of `repeats`): on a shared machine, other processes' load
    does not count, and parsing is single-threaded CPU work."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.thread_time()
        fn(markup)
        best = min(best, time.thread_time() - t0)
    return best


def run(cfg: BenchConfig) -> dict:
    results: dict = {}
    todo = parsers(cfg)
    for name, (unit, issue_size) in INPUTS.items():
        sizes = sizes_for(issue_size)
        seconds: dict[str, dict[int, float]] = {parser: {} for parser in todo}
        for parser, fn in todo.items():
            for size in sizes:
                t = timed(fn, (unit * (size // len(unit) + 1))[:size], cfg.repeats)
                seconds[parser][size] = round(t, 4)
                if t > cfg.cap_seconds:
                    break
        summary = {}
        base = seconds["lxml_direct"]
        for parser, measured in seconds.items():
            done = sorted(measured)
            timed_sizes = [n for n in done if measured[n] >= MIN_TIMED]  # below this, timer noise dominates
            exponent = None
            if len(timed_sizes) > 1:
                lo, hi = timed_sizes[-2], timed_sizes[-1]
                exponent = math.log(measured[hi] / measured[lo]) / math.log(hi / lo)
            b = measured[done[-1]]
            entry = {"largest_size_run": done[-1], "seconds_at_largest": measured[done[-1]],
                     "growth_exponent": round(exponent, 2) if exponent is not None else None}
            if issue_size in measured:
                entry["seconds_at_issue_size"] = measured[issue_size]
                if base.get(issue_size):
                    entry["vs_lxml_at_issue_size"] = round(measured[issue_size] / base[issue_size], 1)
            if LIMIT not in measured and exponent is not None:
                # what the 2 MB body limit would take if the measured growth held
                entry["projected_seconds_at_2MB"] = round(b * (LIMIT / done[-1]) ** max(exponent, 1.0), 1)
            summary[parser] = entry
        results[name] = {"issue_size": issue_size, "summary": summary,
                         "seconds": {p: {str(k): v for k, v in m.items()} for p, m in seconds.items()}}
    return {"config": asdict(cfg), "inputs": results}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for f in fields(BenchConfig):
        kind = (lambda s: s.lower() in ("1", "true", "yes")) if isinstance(f.default, bool) else type(f.default)
        p.add_argument("--" + f.name.replace("_", "-"), type=kind, default=f.default)
    print(json.dumps(run(BenchConfig(**vars(p.parse_args(argv)))), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
