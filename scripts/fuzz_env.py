"""Fuzz the environment the way an attacker or a careless user would, and print JSON.

    python scripts/fuzz_env.py                       # >= 100,000 commands, 5,000 HTML documents
    python scripts/fuzz_env.py --commands 2000 --html-docs 200 --corpus ""   # a quick run

Commands (valid ones drawn from the current view, random ones, and mutations of valid ones) are
driven through the text browser over three backends: a local corpus (pydocs by default), a
hostile JSONL corpus written here (surrogate escapes, control and bidi characters, fake link
markers, script urls, malformed anchors and link offsets), and the live-web backend against that
hostile corpus served on 127.0.0.1. Random and malformed HTML documents (deep nesting,
unterminated tags, entities, mutated real pages, the issue's '<a' * 50000) go through the
renderer, each timed in CPU seconds (and wall seconds, which other load on the machine inflates). Every exception is counted with its command; so is any rendered page
whose links break the Page contract. The goal is zero of both, and no document over 1 s.
Time is bounded by --max-seconds; the JSON says if the run stopped early.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
import traceback
from collections import Counter
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from citeenv.browser import BrowserConfig
from citeenv.commands import KEYWORDS, QUOTE_SEP
from citeenv.corpus import Corpus
from citeenv.gym_env import TextBrowserEnv
from citeenv.index import in_memory_index, open_index
from citeenv.local import LocalBackend
from citeenv.render import LINK_CLOSE, LINK_OPEN, LINK_SEP
from citeenv.safe_url import safe_http_url
from citeenv.web.backend import make_web_backend
from citeenv.web.html import render_html
from citeenv.web.serve import serve_corpus

PYTHON_DOCS = Path("/usr/share/doc/python3.11/html/library")


@dataclass
class FuzzConfig:
    commands: int = 100_000  # browser steps in all, over the backends below
    web_share: float = 0.15  # of the commands, the share sent through the web backend (HTTP on loopback)
    corpus: str = "pydocs"  # the local corpus ("" to use only the hostile one)
    html_docs: int = 5_000
    slow_html_seconds: float = 1.0  # a document taking more CPU time than this to render counts as slow
    max_actions: int = 25  # per episode, so episodes also reach the answering phase
    seed: int = 0
    max_seconds: float = 3600.0  # stop early past this, and say so
    examples: int = 10  # failures shown in full


# -- text an attacker types ---------------------------------------------------------------------

NASTY = ["\u0130", "\u0130" * 40, "\ud800", "\udfff", "\x00", "\x1b[31m", "\u202e", "\u200b", "\ufeff", "\r", "\n", "\t",
         LINK_OPEN, LINK_SEP, LINK_CLOSE, f"{LINK_OPEN}0{LINK_SEP}x{LINK_CLOSE}", QUOTE_SEP, QUOTE_SEP * 2, "[1]", "[99999999999999999999]",
         "ß", "ﬃ", "e\u0301", "😀", "\U0010ffff", "<script>alert(1)</script>", "javascript:alert(1)", "%00", "%ff", "../../etc/passwd",
         "1e400", "-1", "99999999999999999999999", "0x10", " ", "  \u3000 ", "\\", "'", '"', "{}", "\u00a0", "İstanbul", "ǅ"]


def random_text(rng: random.Random, max_len: int = 40) -> str:
    kind = rng.random()
    if kind < 0.3:
        return "".join(rng.choice(NASTY) for _ in range(rng.randint(1, 4)))
    if kind < 0.5:
        return "".join(chr(rng.randint(0, 0x10FFFF)) for _ in range(rng.randint(0, max_len)))
    if kind < 0.6:
        return rng.choice(NASTY) * rng.randint(100, 3000)  # long
    alphabet = "abcdefghijklmnopqrstuvwxyz  .,:;-_()[]0123456789" + "".join(NASTY[:14])
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, max_len)))


def mutate(rng: random.Random, s: str) -> str:
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(7)
        i = rng.randint(0, len(s))
        if op == 0:
            s = s[:i] + random_text(rng, 5) + s[i:]
        elif op == 1 and s:
            s = s[:i] + s[i + rng.randint(1, 5):]
        elif op == 2:
            s = s.upper() if rng.random() < 0.5 else s.swapcase()
        elif op == 3:
            s = s + s
        elif op == 4:
            s = s.replace(" ", rng.choice(["", "  ", "\t", "\n", "\u00a0"]))
        elif op == 5:
            s = s[: rng.randint(0, len(s))]
        else:
            s = rng.choice(NASTY) + s + rng.choice(NASTY)
    return s


def valid_command(rng: random.Random, info: dict) -> str:
    """A command the current view allows, with arguments taken from what it shows."""
    valid = info.get("valid_commands") or list(KEYWORDS)
    kind = rng.choice(valid)
    text = info.get("quotable_text") or ""
    if kind == "Search":
        words = (text or "python json file list dict string").split()
        return "Search " + " ".join(rng.sample(words, min(len(words), rng.randint(1, 4))))
    if kind == "Clicked on link":
        ids = info.get("link_ids") or [0]
        return f"Clicked on link {rng.choice(ids)}"
    if kind in ("Find in page:", "Quote:"):
        if not text:
            return f"{kind} {random_text(rng)}"
        a = rng.randint(0, max(0, len(text) - 1))
        piece = text[a:a + rng.randint(1, 120)]
        if kind == "Quote:" and rng.random() < 0.3 and len(piece) > 10:
            piece = piece[:5] + QUOTE_SEP + piece[-5:]
        return f"{kind} {piece}"
    if kind.startswith("Scrolled"):
        return f"{kind} {rng.randint(1, 3)}"
    return kind


def random_command(rng: random.Random) -> object:
    r = rng.random()
    if r < 0.02:
        return rng.choice([None, 3, b"Search x", ["Top"], 1.5])  # not text at all
    kind = rng.choice(KEYWORDS + ("Jump", "search", "Clicked on", ""))
    arg = rng.choice([random_text(rng), str(rng.randint(-5, 10**7)), "", "0" * 30, str(10**30)])
    return f"{kind}{rng.choice([' ', '', '  ', chr(9)])}{arg}"


def answer_text(rng: random.Random, info: dict) -> object:
    r = rng.random()
    if r < 0.1:
        return rng.choice([None, "", "   ", 7])
    ns = info.get("quote_numbers") or []
    marks = "".join(f"[{rng.choice(ns + [0, 99, 10**25])}]" for _ in range(rng.randint(0, 3)))
    return random_text(rng, 60) + " " + marks if r < 0.5 else "The answer is here " + marks


# -- hostile corpus -------------------------------------------------------------------------------

def hostile_records(rng: random.Random, n: int = 60) -> list[str]:
    lines = []
    for i in range(n):
        text = " ".join(random_text(rng, 30) for _ in range(rng.randint(1, 60)))
        text += f" common words python json file {LINK_OPEN}{i}{LINK_SEP}fake{LINK_CLOSE} İİİ end"
        url = rng.choice([f"https://hostile.example/{i}", f"javascript:alert({i})", "", "http://[::1", f"https://hostile.example/{i}#x",
                          f"data:text/html,{i}", f"https://hostile.example/{i}?q=\u202e"])
        links = []
        for _ in range(rng.randint(0, 6)):
            a = rng.randint(-5, len(text) + 5)
            links.append(rng.choice([
                {"text": "l", "url": f"https://hostile.example/{rng.randrange(n)}#a", "start": a, "end": a + rng.randint(-3, 30)},
                {"text": "js", "url": "javascript:alert(1)", "start": a, "end": a + 2},
                [f"t{i}", f"https://hostile.example/{rng.randrange(n)}"],
                f"https://hostile.example/{rng.randrange(n)}",
            ]))
        if rng.random() < 0.05:  # a malformed offset: the corpus loader skips the line with a warning
            links.append({"url": "https://hostile.example/x", "start": rng.choice(["abc", 1e400, [1]])})
        meta = {"anchors": {"a": rng.choice([5, "x", -1, 10**30, None, [1], 1e300])}, "junk": rng.choice(["\ud800", 1, None])}
        record = {"id": rng.choice([str(i), i, f"id-{i}"]), "title": rng.choice([random_text(rng, 20), None, 5, ""]),
                  "url": url, "text": text, "links": links, "meta": meta}
        lines.append(json.dumps(record))
    lines += ['{"text": ', "[]", '{"id": "no text"}', '{"text": 5}', "\x00\x01", "[" * 5000 + "]" * 5000,
              '{"text": "dup", "id": "0"}', '{"text": "' + "\\ud800" * 50 + '"}']
    return lines


# -- HTML documents -------------------------------------------------------------------------------

TAGS = ["a", "p", "div", "span", "b", "i", "pre", "code", "ul", "ol", "li", "table", "tr", "td", "th", "h1", "h2", "br", "img",
        "script", "style", "noscript", "template", "iframe", "svg", "math", "title", "base", "meta", "nav", "footer", "aside",
        "select", "textarea", "xmp", "plaintext", "frameset", "object", "form", "!--", "![CDATA[", "?xml", "!DOCTYPE"]
ATTRS = ["href='{u}'", 'href="{u}"', "href={u}", "hidden", "style='display:none'", "aria-hidden=true", "role=navigation",
         "start=99999999999999999999", "start=-5", "alt='{t}'", "name='citeagent:doc-id' content='{t}'", "x" * 200 + "=1"]
URLS = ["javascript:alert(1)", "JaVaScRiPt:x", "java\nscript:x", "data:text/html,x", "/rel", "https://e.org/a#b", "#frag",
        "http://[::1", "//evil.example/x", "", "http://" + "a" * 3000, "vbscript:x", "mailto:a@b.c", "\x00http://x"]


def random_html(rng: random.Random, real_pages: list[str]) -> str:
    kind = rng.random()
    if kind < 0.15 and real_pages:  # a real page, cut and spliced
        page = rng.choice(real_pages)
        a, b = sorted(rng.randint(0, len(page)) for _ in range(2))
        return mutate(rng, page[a:b][:200_000]) if rng.random() < 0.5 else page[:a] + random_html(rng, []) + page[b:]
    if kind < 0.25:  # repetition: the shapes that make parsers quadratic
        unit = rng.choice(["<a", "<div>", "<p", "<b>x", "<table><tr><td>", "<!--", "<a href='", "&#", "<x y=", "</", "<svg><p>",
                           "<li><ul>", "<select><option>", "<pre>\n"])
        return unit * rng.randint(1, 60_000 // len(unit))
    parts = []
    for _ in range(rng.randint(1, 80)):
        r = rng.random()
        tag = rng.choice(TAGS)
        if r < 0.35:
            attrs = " ".join(rng.choice(ATTRS).format(u=rng.choice(URLS), t=random_text(rng, 10)) for _ in range(rng.randint(0, 3)))
            parts.append(f"<{tag} {attrs}>" if rng.random() < 0.9 else f"<{tag} {attrs}")
        elif r < 0.55:
            parts.append(f"</{tag}>")
        elif r < 0.65:
            parts.append(rng.choice(["&amp;", "&lt;", "&#0;", "&#x110000;", "&#99999999999;", "&bogus;", "&", "&#xD800;", "&nbsp"]))
        else:
            parts.append(random_text(rng, 30))
    return "".join(parts)


def check_page(page) -> str | None:
    """Why the page breaks the Page contract, or None."""
    for link in page.links:
        if not (0 <= link.start < link.end <= len(page.text)) or page.text[link.start:link.end] != link.text:
            return f"link {link.url[:60]!r} is not at its offsets"
        if safe_http_url(link.url) != link.url:
            return f"link url {link.url[:60]!r} is not a safe http(s) url"
    if "\ud800" in page.text or "\x00" in page.text:
        return "a lone surrogate or NUL in the text"
    return None


# -- runs -------------------------------------------------------------------------------------------

class Tally:
    def __init__(self, examples: int):
        self.counts: Counter = Counter()
        self.failures: Counter = Counter()
        self.examples: list[dict] = []
        self.keep = examples

    def fail(self, where: str, what: str, detail: str, item) -> None:
        key = f"{where}: {what}"
        self.failures[key] += 1
        if self.failures[key] == 1 and len(self.examples) < self.keep:
            self.examples.append({"where": where, "what": what, "detail": detail[-1500:], "input": repr(item)[:300]})


def drive(name: str, env: TextBrowserEnv, n: int, rng: random.Random, tally: Tally, stop_at: float) -> None:
    """n commands through env (questions refused at reset do not count towards n)."""
    done, info = True, {}
    attempts = 0
    while tally.counts[f"{name}.commands"] < n and attempts < 3 * n:
        attempts += 1
        if time.monotonic() > stop_at:
            tally.counts["stopped_early"] = 1
            return
        if done:
            question = mutate(rng, "What does json.dumps return?") if rng.random() < 0.5 else random_text(rng, 80)
            try:
                _, info = env.reset(seed=rng.randrange(10**9), options={"question": question})
            except ValueError:
                tally.counts[f"{name}.questions_refused"] += 1  # empty or too long: a message, as documented
                continue
            except Exception as e:  # noqa: BLE001 - counting every failure is the point
                tally.fail(name, f"reset raised {type(e).__name__}", traceback.format_exc(), question)
                continue
            tally.counts[f"{name}.episodes"] += 1
        if info.get("phase") == "answer":
            action = answer_text(rng, info)
        else:
            r = rng.random()
            action = valid_command(rng, info) if r < 0.5 else random_command(rng) if r < 0.8 else mutate(rng, valid_command(rng, info))
        try:
            _, _, term, trunc, info = env.step(action)
            env.render() if hasattr(env, "render") and rng.random() < 0.01 else None
            done = term or trunc
            tally.counts[f"{name}.commands"] += 1
            tally.counts[f"{name}.rejected"] += info.get("error") is not None
        except Exception as e:  # noqa: BLE001
            tally.fail(name, f"step raised {type(e).__name__}", traceback.format_exc(), action)
            done = True


def fuzz_html(cfg: FuzzConfig, rng: random.Random, tally: Tally, stop_at: float) -> dict:
    real = [p.read_text(encoding="utf-8") for p in sorted(PYTHON_DOCS.glob("*.html"))[:40]] if PYTHON_DOCS.is_dir() else []
    times: list[float] = []  # CPU seconds of this thread: what the renderer costs, whatever else loads the machine
    walls: list[float] = []
    for _ in range(cfg.html_docs):
        if time.monotonic() > stop_at:
            tally.counts["stopped_early"] = 1
            break
        doc = random_html(rng, real)
        t0, w0 = time.thread_time(), time.perf_counter()
        try:
            page = render_html(doc, "https://fuzz.example/dir/page.html")
        except Exception as e:  # noqa: BLE001
            tally.fail("html", f"render raised {type(e).__name__}", traceback.format_exc(), doc)
            continue
        finally:
            times.append(time.thread_time() - t0)
            walls.append(time.perf_counter() - w0)
        problem = check_page(page)
        if problem:
            tally.fail("html", "broken page", problem, doc)
        if times[-1] > cfg.slow_html_seconds:
            tally.fail("html", f"over {cfg.slow_html_seconds:g} s of CPU", f"{times[-1]:.2f} s, {len(doc)} chars", doc[:200])
    times.sort()
    walls.sort()
    return {"documents": len(times), "cpu_seconds_max": round(times[-1], 4) if times else None,
            "cpu_seconds_p50": round(times[len(times) // 2], 5) if times else None,
            "cpu_seconds_p99": round(times[int(len(times) * 0.99)], 4) if times else None,
            "over_limit": sum(t > cfg.slow_html_seconds for t in times),
            "wall_seconds_max": round(walls[-1], 4) if walls else None,
            "wall_seconds_p99": round(walls[int(len(walls) * 0.99)], 4) if walls else None}


def run(cfg: FuzzConfig) -> dict:
    rng = random.Random(cfg.seed)
    started = time.monotonic()
    stop_at = started + cfg.max_seconds
    tally = Tally(cfg.examples)
    browser = BrowserConfig(max_actions=cfg.max_actions, answer_attempts=2)
    with tempfile.TemporaryDirectory(prefix="citeagent-fuzz-") as tmp:
        path = Path(tmp) / "hostile.jsonl"
        path.write_text("\n".join(hostile_records(rng)) + "\n", encoding="utf-8")
        hostile = Corpus.from_jsonl(path)
        hostile_index = in_memory_index(hostile, "bm25")
        server, base_url = serve_corpus(hostile, hostile_index)
        try:
            web_n = int(cfg.commands * cfg.web_share)
            local_n = cfg.commands - web_n
            targets = [("hostile_corpus", TextBrowserEnv(LocalBackend(hostile, hostile_index), browser),
                        local_n if not cfg.corpus else local_n // 2)]
            if cfg.corpus:
                corpus, searcher = open_index(cfg.corpus, kind="bm25", build_if_missing=True)
                targets.append((f"local_{cfg.corpus}", TextBrowserEnv(LocalBackend(corpus, searcher), browser),
                                local_n - local_n // 2))
            targets.append(("web_loopback", TextBrowserEnv(make_web_backend(base_url, only_search_host=True), browser), web_n))
            per_backend = {}
            for name, env, n in targets:
                t0 = time.monotonic()
                drive(name, env, n, rng, tally, stop_at)
                per_backend[name] = {"commands": tally.counts[f"{name}.commands"], "episodes": tally.counts[f"{name}.episodes"],
                                     "rejected_with_a_message": tally.counts[f"{name}.rejected"],
                                     "questions_refused": tally.counts[f"{name}.questions_refused"],
                                     "seconds": round(time.monotonic() - t0, 1)}
        finally:
            server.close()
    html = fuzz_html(cfg, rng, tally, stop_at)
    commands = sum(b["commands"] for b in per_backend.values())
    exceptions = sum(n for k, n in tally.failures.items() if "raised" in k and not k.startswith("html"))
    return {
        "config": asdict(cfg),
        "commands": commands,
        "command_exceptions": exceptions,
        "backends": per_backend,
        "html": html | {"exceptions": sum(n for k, n in tally.failures.items() if k.startswith("html: render raised")),
                        "broken_pages": tally.failures.get("html: broken page", 0)},
        "failures": dict(tally.failures),
        "examples": tally.examples,
        "stopped_early": bool(tally.counts["stopped_early"]),
        "seconds": round(time.monotonic() - started, 1),
        "ok": not tally.failures and not tally.counts["stopped_early"],
    }


def parse_args(argv=None) -> FuzzConfig:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for f in fields(FuzzConfig):
        p.add_argument("--" + f.name.replace("_", "-"), type=type(f.default), default=f.default)
    return FuzzConfig(**vars(p.parse_args(argv)))


def main(argv=None) -> int:
    result = run(parse_args(argv))
    print(json.dumps(result, indent=2, ensure_ascii=True))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
