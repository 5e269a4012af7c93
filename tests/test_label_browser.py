"""A person labels pairs in a real headless Chromium: log in, read both cited answers, judge them,
submit; then the database and the export are checked. Debian's chromium, driven by Playwright."""
from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from citeagent.reward.sources import load_webgpt_file
from feedback_support import PASSWORD, XSS_TITLE, run_cli, start_server, write_policy_answers

CHROMIUM = "/usr/bin/chromium"
# Without these the sandboxed, closed network refuses Chromium's connections (see the project brief).
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (`apt-get install -y chromium`).", pytrace=False)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


def test_annotator_labels_pairs_in_a_browser(tmp_path, browser):
    url = f"sqlite:///{tmp_path / 'labels.db'}"
    for args in (["add-user", "ann", "--admin"], ["add-user", "bob"]):
        r = run_cli(*args, "--password-stdin", "--db", url, stdin=PASSWORD + "\n")
        assert r.returncode == 0, r.stderr
    r = run_cli("enqueue", str(write_policy_answers(tmp_path / "answers.jsonl", n_questions=3)), "--db", url)
    assert r.returncode == 0 and "queued 3 pairs" in r.stdout, r.stderr
    srv = start_server(url, tmp_path / "server.log")
    try:
        _label_three_pairs(browser, srv.url, tmp_path)
        _admin_sees_the_work(browser, srv.url)
    finally:
        srv.stop()

    con = sqlite3.connect(tmp_path / "labels.db")
    rows = con.execute("SELECT annotator, score_a, a_supported, a_plausible, b_supported, b_harmful, reason, shown_question "
                       "FROM judgements ORDER BY pair_id").fetchall()
    con.close()
    # bob always gave the preference to the answer that quotes its source (answer A), whichever side it was on
    assert [(r[0], r[1]) for r in rows] == [("bob", 1.0), ("bob", 0.0), ("bob", pytest.approx(1 / 3))]
    assert all(r[2:6] == (1, 1, 0, 1) for r in rows)
    assert [r[6] for r in rows] == ["A quotes its source <b>verbatim</b>", "", ""]
    assert rows[0][7] == "Question 0: who wrote play number 0?"

    out = tmp_path / "export.jsonl"
    r = run_cli("export", "--out", str(out), "--db", url)
    assert r.returncode == 0 and "exported 3 judgements" in r.stdout, r.stderr
    comps, stats = load_webgpt_file(out)
    assert stats.kept == 3
    assert [c.score_0 for c in comps] == [1.0, 0.0, pytest.approx(1 / 3)]
    assert comps[0].answer_0.quotes[0].title == XSS_TITLE and comps[0].meta["supported_0"] is True
    assert comps[0].meta["harmful_1"] is True and comps[0].meta["annotator"] == "bob"


def _label_three_pairs(browser, base: str, tmp_path: Path) -> None:
    dialogs = []
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(base + "/label")
    assert "/login" in page.url
    page.fill("input[name=username]", "bob")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/label")

    # the comparison page: both answers, every quote beside its source title and url
    assert page.inner_text("#question") == "Question 0: who wrote play number 0?"
    titles = page.locator(".source .title").all_inner_texts()
    assert XSS_TITLE in titles  # the script tag is shown as text ...
    assert page.evaluate("window.__pwned") is None  # ... and never ran; nor did the onerror image
    assert page.locator("a.url[href^='javascript']").count() == 0
    assert page.locator(".source .url", has_text="javascript:window.__pwned=3").count() == 1
    page.screenshot(path=str(tmp_path / "label_app.png"), full_page=True)  # docs/ has scripts/label_app_screenshot.py's

    # submitting with nothing chosen is stopped by the form itself: still the same pair, nothing stored
    page.click("#submit")
    assert page.inner_text("#question") == "Question 0: who wrote play number 0?"

    choices = [("much better", "A quotes its source <b>verbatim</b>"), ("Tie", ""), ("slightly better", "")]
    for i, (strength, reason) in enumerate(choices):
        assert page.inner_text("#question") == f"Question {i}: who wrote play number {i}?"
        good = "left" if "Author" in page.inner_text("#left .text") else "right"
        bad = "right" if good == "left" else "left"
        for side in ("left", "right"):
            page.check(f"input[name={side}_supported][value={'yes' if side == good else 'no'}]")
            page.check(f"input[name={side}_plausible][value=yes]")
        page.check(f"input[name={bad}_harmful]")
        label = "Tie" if strength == "Tie" else f"{good.capitalize()} {strength}"
        page.get_by_label(label, exact=True).check()
        if reason:
            page.fill("textarea[name=reason]", reason)
        page.click("#submit")
        page.wait_for_load_state()
        assert "Judgement saved." in page.inner_text(".flash")
    assert "Nothing left to label" in page.inner_text("main")
    assert dialogs == []
    page.close()


def _admin_sees_the_work(browser, base: str) -> None:
    page = browser.new_page()
    page.goto(base + "/login")
    page.fill("input[name=username]", "ann")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/label")
    page.click("text=Admin")
    row = page.locator("tr", has_text="bob")
    assert row.locator("td").nth(2).inner_text() == "3"
    assert "3 judgements" in page.inner_text("main")
    page.close()
