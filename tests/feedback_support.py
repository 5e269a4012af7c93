"""Shared pieces of the labelling-app tests: a real server in a subprocess on 127.0.0.1, a client
that uses the app's forms the way a browser does, and sample answers with hostile content."""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parent.parent
PASSWORD = "correct horse battery"
XSS_TITLE = 'Evil <script>window.__pwned = 1; alert("x")</script> page'
XSS_TEXT = '<img src=x onerror="window.__pwned=2"> quoted from the page'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_policy_answers(path: Path, n_questions: int = 3, hostile: bool = True) -> Path:
    """Two sampled answers per question (a third, identical to the first, which must be merged)."""
    rows = []
    for i in range(n_questions):
        q = f"Question {i}: who wrote play number {i}?"
        good = {"question": q, "text": f"Author {i} wrote it [1].",
                "quotes": [{"n": 1, "title": XSS_TITLE if hostile and i == 0 else f"Play {i}",
                            "url": "javascript:window.__pwned=3" if hostile and i == 0 else f"https://example.org/play/{i}",
                            "text": XSS_TEXT if hostile and i == 0 else f"Play {i} was written by Author {i}."}]}
        bad = {"question": q, "text": f"Somebody else {i} [1].",
               "quotes": [{"n": 1, "title": f"Other {i}", "url": f"https://example.org/other/{i}", "text": f"Other text {i}."}]}
        rows += [good, bad, good]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def run_cli(*args: str, stdin: str | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    """`citeagent label ...` as a person runs it, in a fresh process."""
    return subprocess.run([sys.executable, "-m", "citeagent.cli", "label", *args], input=stdin, capture_output=True,
                          text=True, cwd=REPO, env={**os.environ, **(env or {})}, timeout=300)


@dataclass
class Server:
    proc: subprocess.Popen
    url: str
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=20)


def start_server(db_url: str, log: Path, *extra: str, env: dict | None = None) -> Server:
    """`citeagent label serve` in a subprocess; returns once /healthz answers."""
    port = free_port()
    out = open(log, "ab")
    proc = subprocess.Popen([sys.executable, "-m", "citeagent.cli", "label", "serve", "--db", db_url, "--port", str(port), *extra],
                            cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    out.close()
    server = Server(proc, f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + 120  # a startup bound, not a speed check: a loaded CI box is slow
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the labelling server exited with {proc.returncode}:\n{server.output()}", pytrace=False)
        try:
            if httpx.get(server.url + "/healthz", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    server.stop()
    pytest.fail(f"the labelling server did not start:\n{server.output()}", pytrace=False)


_FIELD = re.compile(r'name="(csrf_token|nonce|pair_id)" value="([^"]*)"')


@dataclass
class ShownPair:
    assignment_id: int
    pair_id: int
    nonce: str
    csrf: str
    html: str

    def form(self, preference: int = -3, reason: str = "", **overrides) -> dict:
        data = {"csrf_token": self.csrf, "nonce": self.nonce, "pair_id": str(self.pair_id), "preference": str(preference),
                "left_supported": "yes", "left_plausible": "yes", "right_supported": "no", "right_plausible": "no",
                "reason": reason}
        data.update(overrides)
        return data


class LabelClient:
    """An annotator's browser session, without the browser: same forms, same cookies."""

    def __init__(self, url: str):
        self.http = httpx.Client(base_url=url, timeout=120)

    def csrf(self, path: str = "/login") -> str:
        r = self.http.get(path)
        return _FIELD.search(r.text).group(2)

    def login(self, username: str, password: str = PASSWORD) -> httpx.Response:
        token = self.csrf("/login")
        return self.http.post("/login", data={"csrf_token": token, "username": username, "password": password,
                                              "next": "/label"})

    def next_pair(self) -> ShownPair | None:
        r = self.http.get("/label")
        assert r.status_code == 200, r.text
        if "Nothing left to label" in r.text:
            return None
        fields = dict(_FIELD.findall(r.text))
        aid = int(re.search(r'action="/label/(\d+)"', r.text).group(1))
        return ShownPair(aid, int(fields["pair_id"]), fields["nonce"], fields["csrf_token"], r.text)

    def submit(self, pair: ShownPair, **kw) -> httpx.Response:
        return self.http.post(f"/label/{pair.assignment_id}", data=pair.form(**kw))

    def close(self) -> None:
        self.http.close()
