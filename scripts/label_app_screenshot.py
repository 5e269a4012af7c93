"""Take the README's screenshot of the comparison page: a throwaway database with one HotpotQA pair
(two answers from the gold judge's sampler), a real `citeagent label serve`, Debian's Chromium.

    .venv/bin/python scripts/label_app_screenshot.py [--out docs/label_app.png]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def pick_pair(index: int):
    from citeagent.reward.gold_judge import gold_score, read_hotpot_records, sample_answer

    record = read_hotpot_records(limit=index + 1)[index]
    rng = random.Random(3)
    answers = [sample_answer(record, rng) for _ in range(40)]
    answers.sort(key=lambda a: gold_score(a, record)["score"])
    return answers[-1], next(a for a in answers if len(a.quotes) >= 2 and a.text != answers[-1].text)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(REPO / "docs" / "label_app.png"))
    ap.add_argument("--record", type=int, default=7, help="which HotpotQA dev record to show")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="label-shot-"))
    db = f"sqlite:///{tmp / 'labels.db'}"
    good, other = pick_pair(args.record)
    (tmp / "pairs.jsonl").write_text(json.dumps({"question": good.question, "answer_a": good.to_dict(),
                                                 "answer_b": other.to_dict()}) + "\n")
    cli = [sys.executable, "-m", "citeagent.cli", "label"]
    subprocess.run([*cli, "add-user", "annotator", "--password-stdin", "--db", db], input="screenshot-pass\n",
                   text=True, check=True, cwd=REPO)
    subprocess.run([*cli, "enqueue", str(tmp / "pairs.jsonl"), "--db", db], check=True, cwd=REPO)
    port = 8797
    server = subprocess.Popen([*cli, "serve", "--db", db, "--port", str(port), "--no-shuffle-sides"], cwd=REPO)
    try:
        for _ in range(600):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS, headless=True)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"http://127.0.0.1:{port}/login")
            page.fill("input[name=username]", "annotator")
            page.fill("input[name=password]", "screenshot-pass")
            page.click("button[type=submit]")
            page.wait_for_url("**/label")
            page.check("input[name=left_supported][value=yes]")
            page.check("input[name=left_plausible][value=yes]")
            page.get_by_label("Left better", exact=True).check()
            page.fill("textarea[name=reason]", "Left quotes both supporting sentences; right's quotes do not mention the answer.")
            page.screenshot(path=args.out, full_page=True)
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(args.out)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.exit(main())
