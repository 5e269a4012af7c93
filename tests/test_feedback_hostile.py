"""The labelling app and its CLI under input found by probing: ids no database integer holds,
password guessing, ports and database urls that are not. Real server processes on 127.0.0.1."""
from __future__ import annotations

import pytest

from citeagent.feedback.auth import LoginLimiter, LoginLimits
from feedback_support import LabelClient, run_cli, start_server
from test_feedback_server import setup_db

HUGE = "123456789012345678901"  # 21 digits: more than a signed 64-bit integer


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hostile")
    srv = start_server(setup_db(tmp, n_questions=2), tmp / "server.log", "--login-max-failures", "3")
    yield srv
    srv.stop()


def test_out_of_range_ids_are_404_and_the_connection_keeps_working(server):
    root = LabelClient(server.url)
    assert root.login("root").status_code == 303
    token = root.csrf("/label")
    # one client, so each next request goes over the same keep-alive connection
    for path in (f"/label/{HUGE}", f"/label/{HUGE}/skip", f"/admin/users/{HUGE}/active", "/label/0"):
        r = root.http.post(path, data={"csrf_token": token, "pair_id": "1", "nonce": "x", "active": "no"})
        assert r.status_code == 404, (path, r.status_code, r.text[:300])
        assert "Traceback" not in r.text and "There is no" in r.text
        assert root.http.get("/label").status_code == 200
    pair = root.next_pair()
    r = root.http.post(f"/label/{pair.assignment_id}", data=pair.form(pair_id=HUGE))
    assert r.status_code == 400 and "which pair" in r.text
    root.close()
    assert "Traceback" not in server.output()


def test_logins_are_locked_after_repeated_wrong_passwords(server):
    guesser = LabelClient(server.url)
    for _ in range(3):
        assert guesser.login("alice", "wrong password").status_code == 401
    r = guesser.login("alice")  # even the right password is refused during the lockout
    assert r.status_code == 429 and "Too many failed logins" in r.text and int(r.headers["retry-after"]) > 0
    assert LabelClient(server.url).login("bob").status_code == 303  # other accounts are not locked
    guesser.close()


def test_login_limiter_counts_per_username_and_address_and_forgets():
    now = [1000.0]
    lim = LoginLimiter(LoginLimits(max_failures=2, per_address_factor=2, window_seconds=60, lockout_seconds=30),
                       clock=lambda: now[0])
    lim.failed("Ann", "10.0.0.1")
    assert lim.retry_after("ann", "10.0.0.1") == 0
    lim.failed("ann", "10.0.0.2")
    assert lim.retry_after("ann", "10.0.0.9") == 30  # the username is locked from any address
    for name in ("b", "c", "d"):
        lim.failed(name, "10.0.0.3")
    lim.failed("e", "10.0.0.3")
    assert lim.retry_after("fresh", "10.0.0.3") == 30  # four names from one address lock the address
    now[0] += 31
    assert lim.retry_after("ann", "10.0.0.1") == 0 and lim.retry_after("fresh", "10.0.0.3") == 0
    lim.failed("ann", "10.0.0.1")
    lim.succeeded("ann")
    lim.failed("ann", "10.0.0.1")
    assert lim.retry_after("ann", "10.0.0.5") == 0  # a success clears the username's count


@pytest.mark.parametrize("args, message", [
    (["serve", "--port", "99999"], "is not a port"),
    (["serve", "--db", "notaurl://x"], "is not a database URL"),
    (["stats", "--db", "notaurl://x"], "is not a database URL"),
])
def test_label_cli_names_bad_ports_and_database_urls(args, message):
    r = run_cli(*args)
    assert r.returncode != 0 and message in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_serve_cli_names_a_bad_port(capsys):
    from citeagent.cli import main

    with pytest.raises(SystemExit) as e:
        main(["serve", "--port", "99999"])
    assert e.value.code == 2 and "'99999' is not a port" in capsys.readouterr().err
