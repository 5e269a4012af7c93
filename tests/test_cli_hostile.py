"""`citeagent browse` and `citeagent ask --web` under input found by probing: invalid UTF-8 typed
at the prompt, a hostile corpus file, a search endpoint with nothing listening. Real subprocesses."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from feedback_support import free_port


def run(*args: str, input: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "citeagent.cli", *args], input=input, capture_output=True,
                          timeout=600, env=os.environ.copy())


def hostile_corpus(tmp_path):
    rows = [
        {"id": "a", "title": "Anchored", "url": "https://example.org/a", "text": "Alpha text about anchors.",
         "meta": {"anchors": {"frag": "not a number"}}},
        {"id": "b", "title": "Bridge", "url": "https://example.org/b", "text": "Bridge page with a link to frag.",
         "links": [{"text": "frag", "url": "https://example.org/a#frag", "start": 28, "end": 32}]},
        {"id": "s", "title": "Surrogate", "url": "https://example.org/s", "text": "Odd text \ud800 inside."},
    ]
    path = tmp_path / "hostile.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))  # json.dumps writes the lone surrogate as \ud800
    return path


def test_browse_keeps_the_session_through_invalid_utf8_and_a_hostile_corpus(tmp_path):
    out = tmp_path / "demos.jsonl"
    typed = b"Search bridge link\n\xff\xfe not utf-8 \xc3\n" + b"Clicked on link 0\nClicked on link 0\n" \
            b"Search odd text\nClicked on link 0\nQuote: Odd text\n"
    r = run("browse", "--corpus", str(hostile_corpus(tmp_path)), "--question", "where?", "--out", str(out), input=typed)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    rec = json.loads(out.read_text(encoding="utf-8"))
    assert rec["complete"] is False  # the input ended mid-episode
    actions = [s["action"] for s in rec["steps"]]
    assert actions[1] == "\ufffd\ufffd not utf-8 \ufffd" and len(actions) == 7
    assert all(s["error"] is None for i, s in enumerate(rec["steps"]) if i != 1)
    assert "Odd text \ufffd inside." in rec["steps"][-1]["observation"]


def test_ask_web_with_nothing_listening_says_so_and_fails(tmp_path):
    url = f"http://127.0.0.1:{free_port()}/"
    r = run("ask", "what is json?", "--web", "--search-url", url)
    err = r.stderr.decode()
    assert r.returncode != 0 and "could not be reached" in err and url in err, err
    assert "declined" not in r.stdout.decode()
