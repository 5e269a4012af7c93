"""Per-rule labels (Sparrow) through the real labelling app in headless Chromium: the annotator reads
the rules, marks which rule each answer breaks, and the labels are stored with the judgement (by
answer, not display side) and exported beside the webgpt_comparisons fields. A label naming a rule
the rule set does not have is refused and nothing of that judgement is stored."""
from __future__ import annotations

import sqlite3

from citeagent.reward.sources import load_webgpt_file
from citeagent.safety.rules import load_rules
from feedback_support import PASSWORD, run_cli, start_server, write_policy_answers
from test_label_browser import browser  # noqa: F401  (the fixture: Debian's chromium through playwright)


def _db_rows(path, sql):
    con = sqlite3.connect(path)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_annotator_marks_broken_rules(tmp_path, browser):  # noqa: F811
    url = f"sqlite:///{tmp_path / 'labels.db'}"
    r = run_cli("add-user", "bob", "--password-stdin", "--db", url, stdin=PASSWORD + "\n")
    assert r.returncode == 0, r.stderr
    r = run_cli("enqueue", str(write_policy_answers(tmp_path / "answers.jsonl", n_questions=2, hostile=False)), "--db", url)
    assert r.returncode == 0, r.stderr
    srv = start_server(url, tmp_path / "server.log")
    try:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(srv.url + "/login")
        page.fill("input[name=username]", "bob")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url("**/label")

        # every rule of the rule file is shown with its text, and offered once per answer
        rules = load_rules()
        shown = page.locator("#rules dt").all_inner_texts()
        assert shown == rules.ids
        assert rules.get("personal-data").text in page.inner_text("#rules")
        assert page.locator("#left input.rule").count() == len(rules.ids)

        def fill_common():
            for side in ("left", "right"):
                page.check(f"input[name={side}_supported][value=yes]")
                page.check(f"input[name={side}_plausible][value=yes]")
            page.get_by_label("Tie", exact=True).check()

        # 1. a forged rule box (an out-of-date form) is refused; nothing is stored
        fill_common()
        page.evaluate("""() => {
            const box = document.createElement('input');
            box.type = 'checkbox'; box.name = 'left_rule_no-such-rule'; box.value = 'yes'; box.checked = true;
            document.querySelector('form.compare').appendChild(box);
        }""")
        page.click("#submit")
        page.wait_for_load_state()
        assert "no-such-rule" in page.inner_text("main") and "Reload the labelling page" in page.inner_text("main")
        assert _db_rows(tmp_path / "labels.db", "SELECT count(*) FROM judgements") == [(0,)]
        assert _db_rows(tmp_path / "labels.db", "SELECT count(*) FROM rule_labels") == [(0,)]

        # 2. the real form: the answer that is not the Author one breaks two rules
        expected = {}
        for i in range(2):
            page.goto(srv.url + "/label")
            assert page.inner_text("#question") == f"Question {i}: who wrote play number {i}?"
            bad = "right" if "Author" in page.inner_text("#left .text") else "left"
            fill_common()
            marked = ["personal-data", "claims-human"] if i == 0 else ["quote-context"]
            for rule in marked:
                page.check(f"input[name={bad}_rule_{rule}]")
            page.click("#submit")
            page.wait_for_load_state()
            assert "Judgement saved." in page.inner_text(".flash")
            expected[f"Question {i}: who wrote play number {i}?"] = marked
        page.close()
    finally:
        srv.stop()

    # stored by answer: B is always the non-Author answer, whichever side it was shown on
    labels = _db_rows(tmp_path / "labels.db", "SELECT j.shown_question, r.side, r.rule_id, j.b_harmful, j.a_harmful "
                                              "FROM rule_labels r JOIN judgements j ON j.id = r.judgement_id ORDER BY r.id")
    assert {(q, side, rule) for q, side, rule, _, _ in labels} == {
        (q, "b", rule) for q, rules in expected.items() for rule in rules}
    assert all(bh == 1 and ah == 0 for *_, bh, ah in labels)  # a broken rule sets the single harm flag too

    out = tmp_path / "export.jsonl"
    r = run_cli("export", "--out", str(out), "--db", url)
    assert r.returncode == 0, r.stderr
    comps, _ = load_webgpt_file(out)
    got = {c.question: (c.meta["rules_0"], c.meta["rules_1"]) for c in comps}
    # file order of the rules, whatever order they were ticked in
    assert got == {q: ([], [x for x in load_rules().ids if x in rules]) for q, rules in expected.items()}
