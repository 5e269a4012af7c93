"""The evaluation report under hostile predictions: urls that would run script become text, and
a quote number no int can hold is one bad record, not a crashed run. The report is opened and
every link clicked in a real headless Chromium (Debian's, driven by Playwright)."""
from __future__ import annotations

import json

import pytest

from citeagent.answer import Answer
from citeagent.eval.runner import EvalConfig, read_records, run_eval
from test_label_browser import browser  # noqa: F401 - the headless Chromium fixture

DOCS = [{"id": "paris", "title": "Paris", "url": "https://ex.org/paris", "text": "Paris is the capital of France."}]
QUESTIONS = [{"id": f"q{i}", "question": f"Question {i}: what is the capital of France?", "answer": "Paris"}
             for i in range(9)]
PWN = "window.__pwned=(window.__pwned||0)+1"
HOSTILE_URLS = [f"javascript:{PWN}", f" JaVaScRiPt:{PWN}", f"java\nscript:{PWN}", f"\tjavascript:{PWN}",
                f"data:text/html,<script>opener.__pwned=1</script>", "vbscript:msgbox(1)",
                f"javascript://ex.org/%0a{PWN}"]


def _prediction(i: int, url: str, n=1) -> str:
    quote = {"n": n, "title": f"<img src=x onerror=\"{PWN}\">title {i}", "url": url, "text": "Paris is the capital"}
    return json.dumps({"id": f"q{i}", "question": QUESTIONS[i]["question"], "answer": "Paris [1].", "quotes": [quote]})


@pytest.fixture()
def hostile_run(tmp_path):
    corpus = tmp_path / "docs.jsonl"
    corpus.write_text("".join(json.dumps(d) + "\n" for d in DOCS))
    qs = tmp_path / "qs.jsonl"
    qs.write_text("".join(json.dumps(q) + "\n" for q in QUESTIONS))
    lines = [_prediction(i, url) for i, url in enumerate(HOSTILE_URLS)]
    # 1e400 parses as infinity: int() of it raised OverflowError and ended the whole run
    lines.append(_prediction(len(HOSTILE_URLS), "https://ex.org/paris").replace('"n": 1', '"n": 1e400'))
    lines.append(_prediction(len(HOSTILE_URLS) + 1, "https://ex.org/paris"))
    preds = tmp_path / "preds.jsonl"
    preds.write_text("\n".join(lines) + "\n")
    out = tmp_path / "run"
    summary = run_eval(EvalConfig(dataset=str(qs), predictions=str(preds), corpus=str(corpus), judge="none",
                                  out=str(out), progress=False, bootstrap=50))
    return out, summary


def test_an_overflowing_quote_number_is_one_bad_record(hostile_run):
    out, summary = hostile_run
    recs = {r["id"]: r for r in read_records(out / "records.jsonl")}
    assert len(recs) == len(QUESTIONS) and summary["n_bad_records"] == 1
    bad = recs[f"line-{len(HOSTILE_URLS) + 1}"]  # a malformed line keeps its line number as id
    assert bad["error"].startswith("malformed prediction") and "quote 1's number 'n'" in bad["error"]
    assert recs["q8"]["metrics"]["quote_verbatim_rate"] == 1.0


@pytest.mark.parametrize("value", [1e400, float("nan"), 10**30, 2.5, True, "x", None])
def test_answer_from_dict_names_a_bad_number(value):
    with pytest.raises(ValueError, match="quote 1's number 'n'"):
        Answer.from_dict({"question": "q", "text": "t", "quotes": [{"text": "x", "n": value}]})
    assert Answer.from_dict({"question": "q", "text": "t", "quotes": [{"text": "x", "n": 2.0, "start": "5"}]}).quotes[0].n == 2


def test_report_links_only_http_and_forbids_scripts(hostile_run):
    html = (hostile_run[0] / "report.html").read_text()
    assert "http-equiv='Content-Security-Policy'" in html and "default-src 'none'" in html
    assert "href='javascript" not in html.lower() and "href='data:" not in html and "href='vbscript" not in html
    assert "href='https://ex.org/paris'" in html
    assert "<img src=x" not in html  # the hostile title is escaped text


def test_clicking_every_report_link_in_chromium_runs_nothing(hostile_run, browser):  # noqa: F811
    report = hostile_run[0] / "report.html"
    page = browser.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    # the closed network: a followed http(s) link gets a stand-in page instead of leaving the machine
    page.route("http*://**/*", lambda route: route.fulfill(body="elsewhere", content_type="text/plain"))
    page.goto(report.as_uri())
    text = page.inner_text("body")
    for i in range(len(HOSTILE_URLS)):
        assert f"title {i}" in text  # every hostile quote is in the report, its url shown as text
    assert "vbscript:msgbox(1)" in text
    hrefs = page.eval_on_selector_all("a", "els => els.map(e => e.getAttribute('href'))")
    for i, href in enumerate(hrefs):
        page.goto(report.as_uri())
        link = page.locator("a").nth(i)
        if href.startswith("https://"):
            with page.expect_navigation():
                link.click()
            assert page.url == href  # a plain navigation away from the report
        else:  # a script link leaves the page where it is, and runs
            link.click(no_wait_after=True)
            page.wait_for_timeout(100)
            assert page.evaluate("window.__pwned") is None, f"clicking {href!r} ran script"
    assert hrefs and all(h.startswith("https://") for h in hrefs)
    # script in the page itself is refused by the policy, even where an escape were missed
    page.goto(report.as_uri())
    page.evaluate("() => { const s = document.createElement('script'); s.textContent = 'window.__pwned = 1';"
                  " document.body.appendChild(s); }")
    assert page.evaluate("window.__pwned") is None
    assert dialogs == []

