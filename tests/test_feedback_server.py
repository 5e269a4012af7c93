"""The labelling app over real HTTP: a `citeagent label serve` subprocess on 127.0.0.1 and a real
SQLite file. Security (logins, CSRF, roles, cookies, headers) and durability (concurrent annotators,
double submits, a server killed with SIGKILL in the middle of a write)."""
from __future__ import annotations

import sqlite3
import threading
import time

import pytest

from citeagent.feedback.auth import create_user
from citeagent.feedback.db import make_engine
from citeagent.feedback.queue import enqueue, read_pairs
from feedback_support import PASSWORD, LabelClient, start_server, write_policy_answers


def consistency(db_path) -> dict:
    """Check the invariants every judgement write must keep, straight from the file."""
    con = sqlite3.connect(db_path)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert con.execute("PRAGMA foreign_key_check").fetchall() == []
        # a judgement exists exactly for the assignments marked done, for the same pair and annotator
        orphans = con.execute("""SELECT j.id FROM judgements j JOIN assignments a ON a.id = j.assignment_id
                                 WHERE a.status != 'done' OR a.pair_id != j.pair_id OR a.user_id != j.user_id""").fetchall()
        assert orphans == []
        missing = con.execute("""SELECT a.id FROM assignments a LEFT JOIN judgements j ON j.assignment_id = a.id
                                 WHERE a.status = 'done' AND j.id IS NULL""").fetchall()
        assert missing == []
        rows = con.execute("SELECT pair_id, user_id FROM judgements").fetchall()
        assert len(rows) == len(set(rows))  # no annotator judged a pair twice
        return {"judgements": len(rows), "rows": rows,
                "open": con.execute("SELECT count(*) FROM assignments WHERE status = 'open'").fetchone()[0]}
    finally:
        con.close()


def setup_db(tmp_path, n_questions: int = 3, annotators=("alice", "bob"), admin: str = "root") -> str:
    """Accounts and a queue, made in-process (the CLI that does the same is exercised by the browser test)."""
    url = f"sqlite:///{tmp_path / 'labels.db'}"
    engine = make_engine(url)
    for name in annotators:
        create_user(engine, name, PASSWORD, rounds=4)
    create_user(engine, admin, PASSWORD, is_admin=True, rounds=4)
    added = enqueue(engine, read_pairs(write_policy_answers(tmp_path / "answers.jsonl", n_questions))[0]).added
    assert len(added) == n_questions
    engine.dispose()
    return url


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("server")
    url = setup_db(tmp, n_questions=6, annotators=("alice", "bob", "carol", "dave"))
    # every annotator sees every pair here, so the tests do not depend on each other's order
    srv = start_server(url, tmp / "server.log", "--labels-per-pair", "10")
    yield srv, tmp / "labels.db"
    srv.stop()


def test_login_is_required_and_checked(server):
    srv, _ = server
    c = LabelClient(srv.url)
    r = c.http.get("/label")
    assert r.status_code == 303 and r.headers["location"].startswith("/login")
    assert c.login("alice", "wrong password").status_code == 401
    assert c.login("nobody").status_code == 401
    r = c.login("alice")
    assert r.status_code == 303 and r.headers["location"] == "/label"
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "secure" not in cookie
    assert c.next_pair() is not None
    # logging out needs the token too; afterwards the session is gone
    assert c.http.post("/logout", data={}).status_code == 403
    assert c.http.post("/logout", data={"csrf_token": c.csrf("/label")}).status_code == 303
    assert c.http.get("/label").status_code == 303


def test_every_form_needs_the_csrf_token(server):
    srv, db = server
    c = LabelClient(srv.url)
    token = c.csrf("/login")
    assert c.http.post("/login", data={"username": "bob", "password": PASSWORD}).status_code == 403
    assert c.http.post("/login", data={"csrf_token": token + "x", "username": "bob", "password": PASSWORD}).status_code == 403
    assert c.login("bob").status_code == 303
    pair = c.next_pair()
    before = consistency(db)["judgements"]
    for bad in ("", "forged", pair.csrf[:-1]):
        r = c.http.post(f"/label/{pair.assignment_id}", data=pair.form(csrf_token=bad))
        assert r.status_code == 403 and "security token" in r.text
        assert c.http.post(f"/label/{pair.assignment_id}/skip", data={"csrf_token": bad, "nonce": pair.nonce}).status_code == 403
    assert consistency(db)["judgements"] == before
    # another session's token is no good either: tokens belong to a session
    other = LabelClient(srv.url)
    other.login("carol")
    r = c.http.post(f"/label/{pair.assignment_id}", data=pair.form(csrf_token=other.next_pair().csrf))
    assert r.status_code == 403 and consistency(db)["judgements"] == before
    assert c.submit(pair).status_code == 303
    assert consistency(db)["judgements"] == before + 1


def test_security_headers_and_no_open_redirect(server):
    srv, _ = server
    c = LabelClient(srv.url)
    r = c.http.get("/login")
    csp = r.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src" not in csp  # no script source at all
    assert r.headers["x-frame-options"] == "DENY" and r.headers["x-content-type-options"] == "nosniff"
    token = c.csrf("/login")
    r = c.http.post("/login", data={"csrf_token": token, "username": "dave", "password": PASSWORD, "next": "//evil.example/x"})
    assert r.status_code == 303 and r.headers["location"] == "/label"


def test_hostile_page_text_is_escaped(server):
    srv, _ = server
    c = LabelClient(srv.url)
    c.login("dave")
    seen = ""
    while (pair := c.next_pair()) is not None and "Evil" not in pair.html:
        seen += pair.html
        c.submit(pair)
    assert pair is not None, "the pair with the hostile quote was never shown"
    html = pair.html
    assert "<script>window.__pwned" not in html and "&lt;script&gt;window.__pwned = 1;" in html
    assert "<img src=x" not in html and "&lt;img src=x onerror=" in html
    assert 'href="javascript:' not in html and "javascript:window.__pwned=3" in html  # shown as text, not a link


def test_roles(server):
    srv, db = server
    annotator = LabelClient(srv.url)
    annotator.login("carol")
    assert annotator.http.get("/admin").status_code == 403
    assert annotator.http.get("/admin/export.jsonl").status_code == 403
    r = annotator.http.post("/admin/users", data={"csrf_token": annotator.csrf("/label"), "username": "mallory",
                                                  "password": PASSWORD})
    assert r.status_code == 403
    admin = LabelClient(srv.url)
    admin.login("root")
    assert admin.http.get("/admin").status_code == 200
    assert admin.http.post("/admin/users", data={"username": "erin", "password": PASSWORD}).status_code == 403
    r = admin.http.post("/admin/users", data={"csrf_token": admin.csrf("/admin"), "username": "erin", "password": PASSWORD})
    assert r.status_code == 303
    r = admin.http.post("/admin/users", data={"csrf_token": admin.csrf("/admin"), "username": "erin", "password": PASSWORD})
    assert r.status_code == 400 and "taken" in r.text
    assert LabelClient(srv.url).login("erin").status_code == 303
    assert LabelClient(srv.url).login("mallory").status_code == 401
    export = admin.http.get("/admin/export.jsonl")
    assert export.status_code == 200 and export.text.count("\n") == consistency(db)["judgements"]


def test_judging_someone_elses_pair_is_refused(server):
    srv, db = server
    alice, bob = LabelClient(srv.url), LabelClient(srv.url)
    alice.login("alice")
    bob.login("bob")
    mine = alice.next_pair()
    theirs = bob.next_pair()
    before = consistency(db)["judgements"]
    r = bob.http.post(f"/label/{mine.assignment_id}", data=mine.form(csrf_token=theirs.csrf))
    assert r.status_code == 403 and "not assigned to you" in r.text
    r = bob.http.post("/label/99999", data=theirs.form())
    assert r.status_code == 404
    assert consistency(db)["judgements"] == before
    assert alice.submit(mine).status_code == 303


def test_incomplete_form_is_refused_with_the_reason(server):
    srv, db = server
    c = LabelClient(srv.url)
    c.login("alice")
    pair = c.next_pair()
    before = consistency(db)["judgements"]
    r = c.http.post(f"/label/{pair.assignment_id}", data=pair.form(preference=""))
    assert r.status_code == 400 and "which answer is better" in r.text
    r = c.http.post(f"/label/{pair.assignment_id}", data={k: v for k, v in pair.form().items() if k != "right_plausible"})
    assert r.status_code == 400 and "right answer plausible" in r.text
    assert consistency(db)["judgements"] == before
    assert c.next_pair().assignment_id == pair.assignment_id  # still waiting for a proper judgement


def test_secure_cookie_flag(tmp_path):
    url = setup_db(tmp_path, n_questions=1, annotators=())
    srv = start_server(url, tmp_path / "server.log", "--secure-cookies")
    try:
        r = LabelClient(srv.url).http.get("/login")
        assert "secure" in r.headers["set-cookie"].lower()
    finally:
        srv.stop()


def test_double_submit_and_two_annotators_at_once(tmp_path):
    url = setup_db(tmp_path, n_questions=8)
    db = tmp_path / "labels.db"
    srv = start_server(url, tmp_path / "server.log")
    try:
        # The same form sent twice at the same moment (a double click, a retried POST).
        alice = LabelClient(srv.url)
        alice.login("alice")
        pair = alice.next_pair()
        twin = LabelClient(srv.url)
        twin.http.cookies = alice.http.cookies
        barrier = threading.Barrier(2)
        replies = []

        def send(client):
            barrier.wait()
            replies.append(client.http.post(f"/label/{pair.assignment_id}", data=pair.form(), follow_redirects=True))

        threads = [threading.Thread(target=send, args=(cl,)) for cl in (alice, twin)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        assert sorted(r.status_code for r in replies) == [200, 200]
        assert sorted("already saved" in r.text for r in replies) == [False, True]
        assert consistency(db)["judgements"] == 1

        # Two annotators label the rest of the queue at the same time.
        recorded = {"alice": [], "bob": []}

        def annotate(name):
            c = LabelClient(srv.url)
            if name == "bob":
                c.login("bob")
            else:
                c.http.cookies = alice.http.cookies
            while (p := c.next_pair()) is not None:
                r = c.submit(p, preference=1 if name == "bob" else -1)
                assert r.status_code == 303
                recorded[name].append(p.pair_id)

        threads = [threading.Thread(target=annotate, args=(n,)) for n in recorded]
        [t.start() for t in threads]
        [t.join() for t in threads]
        state = consistency(db)
        assert state["judgements"] == 8 and state["open"] == 0
        assert len(recorded["alice"]) + len(recorded["bob"]) == 7
        pairs = [p for p, _ in state["rows"]]
        assert sorted(pairs) == list(range(1, 9))  # every pair judged exactly once (one label per pair)
        assert not set(recorded["alice"]) & set(recorded["bob"])
    finally:
        srv.stop()


def test_server_killed_mid_write_loses_nothing_committed(tmp_path):
    url = setup_db(tmp_path, n_questions=3)
    db = tmp_path / "labels.db"
    log = tmp_path / "server.log"
    srv = start_server(url, log)
    alice = LabelClient(srv.url)
    alice.login("alice")
    first = alice.next_pair()
    assert alice.submit(first, reason="before the crash").status_code == 303
    srv.stop()

    # The second judgement is written but not committed when the server dies: the fault hook holds
    # the transaction open, tells us through the marker file, and we SIGKILL the process there.
    marker = tmp_path / "in-transaction"
    srv = start_server(url, log, env={"CITEAGENT_LABEL_FAULT_PAUSE": "600", "CITEAGENT_LABEL_FAULT_MARKER": str(marker)})
    alice.http.base_url = srv.url
    second = alice.next_pair()
    assert second.pair_id != first.pair_id
    failure = []
    t = threading.Thread(target=lambda: failure.append(_post_expecting_failure(alice, second)))
    t.start()
    deadline = time.monotonic() + 120
    while not marker.exists() and time.monotonic() < deadline and t.is_alive():
        time.sleep(0.05)
    assert marker.read_text() == str(second.assignment_id)
    srv.kill9()
    t.join(timeout=60)
    assert failure == [True]

    state = consistency(db)
    assert state["judgements"] == 1 and state["open"] == 1  # the committed one survived, the other left no trace
    con = sqlite3.connect(db)
    assert con.execute("SELECT reason FROM judgements").fetchall() == [("before the crash",)]
    con.close()

    # After a restart the same session continues: the interrupted pair comes back and is judged once.
    srv = start_server(url, log)
    try:
        alice.http.base_url = srv.url
        again = alice.next_pair()
        assert again.assignment_id == second.assignment_id
        assert alice.submit(again).status_code == 303
        assert alice.submit(again).status_code == 303  # a retry of the same form after the restart
        state = consistency(db)
        assert state["judgements"] == 2
    finally:
        srv.stop()


def _post_expecting_failure(client, pair) -> bool:
    try:
        client.submit(pair)
    except Exception:  # the connection dies with the server
        return True
    return False
