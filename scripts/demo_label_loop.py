"""Close the loop end to end: queue HotpotQA answer pairs, label them through the running web app's
forms, export, and train a reward model on the export.

The annotator here is a script that follows the HotpotQA gold judge (answer F1 + gold supporting-
sentence recall), so the run is reproducible; every judgement still goes through login, the
comparison page, CSRF-checked forms, the database and `citeagent label export`, as a person's would.

    .venv/bin/python scripts/demo_label_loop.py --pairs 300 --out runs/label-loop
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
PASSWORD = "demo-annotator-pass"


def scale(diff: float) -> int:
    """Gold-score difference (left minus right) to the form's 7-point scale (-3: left much better)."""
    mag = abs(diff)
    step = 0 if mag == 0 else 1 if mag < 0.25 else 2 if mag < 0.5 else 3
    return -step if diff > 0 else step


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", type=int, default=300)
    ap.add_argument("--out", default="runs/label-loop")
    ap.add_argument("--port", type=int, default=8798)
    ap.add_argument("train_args", nargs="*", help="extra `citeagent train rm` flags, after --")
    args = ap.parse_args()
    from citeagent.answer import Answer
    from citeagent.eval.datasets import hotpotqa_split
    from citeagent.reward.gold_judge import gold_score, read_hotpot_records, synthetic_comparisons

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    db = f"sqlite:///{out / 'labels.db'}"
    # Training questions only: `citeagent train rm` refuses pairs about the held-out evaluation ones.
    records = hotpotqa_split(read_hotpot_records())[0]
    by_question = {r["question"]: r for r in records}
    comps = synthetic_comparisons(records, pairs_per_question=1, seed=7)[: args.pairs]
    with open(out / "pairs.jsonl", "w") as f:
        for c in comps:
            f.write(json.dumps({"question": c.question, "answer_a": c.answer_0.to_dict(), "answer_b": c.answer_1.to_dict()}) + "\n")
    cli = [sys.executable, "-m", "citeagent.cli", "label"]
    subprocess.run([*cli, "add-user", "gold-annotator", "--password-stdin", "--db", db], input=PASSWORD + "\n", text=True,
                   check=True, cwd=REPO)
    subprocess.run([*cli, "enqueue", str(out / "pairs.jsonl"), "--skip-existing", "--db", db], check=True, cwd=REPO)
    server = subprocess.Popen([*cli, "serve", "--db", db, "--port", str(args.port)], cwd=REPO)
    base = f"http://127.0.0.1:{args.port}"
    t0 = time.perf_counter()
    n = 0
    try:
        for _ in range(600):
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        http = httpx.Client(base_url=base, timeout=60)
        token = re.search(r'name="csrf_token" value="([^"]+)"', http.get("/login").text).group(1)
        http.post("/login", data={"csrf_token": token, "username": "gold-annotator", "password": PASSWORD})
        while True:
            page = http.get("/label").text
            if "Nothing left to label" in page:
                break
            fields = dict(re.findall(r'name="(csrf_token|nonce|pair_id)" value="([^"]*)"', page))
            aid = re.search(r'action="/label/(\d+)"', page).group(1)
            # A person reads the two answers off the page; the script looks up the same pair and the
            # side each answer is shown on in the database, then judges it with the gold judge.
            con = sqlite3.connect(out / "labels.db")
            q, a_json, b_json, swapped = con.execute(
                "SELECT p.question, p.answer_a, p.answer_b, a.swapped FROM pairs p JOIN assignments a ON a.pair_id = p.id "
                "WHERE a.id = ?", (int(aid),)).fetchone()
            con.close()
            left, right = (b_json, a_json) if swapped else (a_json, b_json)
            record = by_question[q]
            gl, gr = (gold_score(Answer.from_dict(json.loads(x)), record) for x in (left, right))
            form = {**fields, "preference": str(scale(gl["score"] - gr["score"])), "reason": "gold judge"}
            for side, g in (("left", gl), ("right", gr)):
                form[f"{side}_supported"] = "yes" if g["sp_recall"] > 0 else "no"
                form[f"{side}_plausible"] = "yes" if g["answer_f1"] > 0 else "no"
            r = http.post(f"/label/{aid}", data=form)
            assert r.status_code == 303, r.text[:500]
            n += 1
    finally:
        server.terminate()
        server.wait(timeout=30)
    label_seconds = time.perf_counter() - t0
    export = out / "export.jsonl"
    subprocess.run([*cli, "export", "--out", str(export), "--db", db], check=True, cwd=REPO)
    train = [sys.executable, "-m", "citeagent.cli", "train", "rm", "--data", str(export), "--out", str(out / "rm"), *args.train_args]
    subprocess.run(train, check=True, cwd=REPO)
    print(json.dumps({"labelled": n, "label_seconds": label_seconds, "export": str(export), "model": str(out / "rm"),
                      "report": json.loads((out / "rm" / "report.json").read_text())["heldout"]["export"]["accuracy"]}))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.exit(main())
