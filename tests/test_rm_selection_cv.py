"""scripts/rm_selection_cv.py: best-of-n's pick, one sample and the oracle on held-out folds of a
policy's samples, with no fold's question in its own reward model's data."""
import json
import subprocess
import sys

import pytest

from citeagent.answer import Answer, Quote
from citeagent.eval.datasets import hotpotqa_split, question_key
from citeagent.reward.gold_judge import read_hotpot_records
from citeagent.reward.sources import load_source
from feedback_support import REPO

N_QUESTIONS, FOLDS = 6, 3


def _answers(record: dict, good: bool) -> dict:
    """The gold answer quoting every gold supporting sentence, or a wrong one quoting a distractor."""
    paras = {t: s for t, s in record["context"]}
    gold = [(t, int(i)) for t, i in record["supporting_facts"]]
    if good:
        facts, text = gold, str(record["answer"])
    else:
        facts = [next((t, i) for t, sents in paras.items() for i in range(len(sents)) if (t, i) not in gold)]
        text = "Zzyzx Qwerty"  # shares no word with any gold answer here
    quotes = [Quote(n=k, title=t, url="", text=paras[t][i].strip()) for k, (t, i) in enumerate(facts, start=1)]
    markers = "".join(f"[{q.n}]" for q in quotes)
    return {"question": record["question"], "answer": Answer(record["question"], f"{text} {markers}", quotes).to_dict()}


@pytest.fixture(scope="module")
def records():
    # Training questions whose supporting sentences are all in the context (a quote can then cover each one).
    out = []
    for r in hotpotqa_split(read_hotpot_records())[0]:
        paras = {t: s for t, s in r["context"]}
        if all(t in paras and int(i) < len(paras[t]) for t, i in r["supporting_facts"]) and r["answer"] not in ("yes", "no"):
            out.append(r)
        if len(out) == N_QUESTIONS:
            return out


def _run(args, tmp_path, timeout=600):
    return subprocess.run([sys.executable, "scripts/rm_selection_cv.py", *args], capture_output=True, text=True,
                          cwd=REPO, timeout=timeout)


def test_cross_validated_selection(records, tmp_path):
    answers = tmp_path / "answers.jsonl"
    answers.write_text("".join(json.dumps(_answers(r, good)) + "\n" for r in records for good in (False, True)))
    recipe = "--backbone tiny --data hotpotqa-synth,hotpotqa-gold:{train} --max-steps 2"
    out = tmp_path / "cv"
    r = _run(["--answers", str(answers), "--recipe", "a", recipe, "--recipe", "b", recipe + " --label-mode graded",
              "--folds", str(FOLDS), "--n-boot", "200", "--out", str(out)], tmp_path)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["questions"] == N_QUESTIONS and summary["samples_per_question"] == 2
    picks = [json.loads(line) for line in (out / "picks.jsonl").read_text().splitlines()]
    for name in ("a", "b"):
        rec = summary["recipes"][name]
        # one sample is right and one wrong on every question: one sample scores 0.5, the oracle 1.0
        for m in ("answer_f1", "sp_f1"):
            assert rec[m]["sample"] == pytest.approx(0.5) and rec[m]["oracle"] == pytest.approx(1.0)
        mine = [p for p in picks if p["recipe"] == name]
        assert len(mine) == N_QUESTIONS
        for p in mine:
            assert p["pick"] == p["metrics"][p["chosen"]] and p["chosen"] == max(range(2), key=lambda i: (p["scores"][i], -i))
            assert p["metrics"][1]["answer_f1"] == 1.0 and p["metrics"][0]["answer_f1"] == 0.0
        bon = sum(p["pick"]["answer_f1"] for p in mine) / N_QUESTIONS
        assert rec["answer_f1"]["best_of_n"] == pytest.approx(bon, abs=1e-4)
        assert rec["answer_f1"]["captured"] == pytest.approx((bon - 0.5) / 0.5, abs=1e-3)
    assert set(summary["against_a"]) == {"b"}

    # No fold's question is in its reward model's data: not among its samples, and its synthetic pairs dropped.
    synth, _ = load_source("hotpotqa-synth")
    fold_of = {question_key(p["question"]): p["fold"] for p in picks if p["recipe"] == "a"}
    assert sorted(set(fold_of.values())) == list(range(FOLDS))
    for k in range(FOLDS):
        trained = {question_key(json.loads(line)["question"]) for line in (out / "folds" / f"train_{k}.jsonl").open()}
        held = {q for q, f in fold_of.items() if f == k}
        assert held and not trained & held and trained | held == set(fold_of)
        report = json.loads((out / "a" / f"fold_{k}" / "report.json").read_text())
        about_fold = sum(question_key(c.question) in held for c in synth)
        assert report["sources"]["hotpotqa-synth"]["dropped"]["about an excluded question"] == about_fold > 0


def test_bad_input(records, tmp_path):
    answers = tmp_path / "answers.jsonl"
    answers.write_text("".join(json.dumps(_answers(r, good)) + "\n" for r in records[:3] for good in (False, True)))
    ok = "--backbone tiny --data hotpotqa-gold:{train} --max-steps 1"
    base = ["--answers", str(answers), "--out", str(tmp_path / "cv")]
    cases = [
        (["--recipe", "a", "--backbone tiny --data hotpotqa-synth"], "never uses {train}"),
        (["--recipe", "a", ok, "--recipe", "a", ok], "two recipes share a name"),
        (["--recipe", "a", ok, "--folds", "4"], "--folds must be between 2 and the 3 questions"),
        (["--recipe", "a", ok, "--recipe", "b", ok + " --label-mode loud"], "recipe 'b': --label-mode must be one of"),
        (["--recipe", "a", ok + " --epochz 3"], "recipe 'a': Some specified arguments are not used by the HfArgumentParser: ['--epochz', '3']"),
        (["--recipe", "a", ok, "--select-on", str(tmp_path / "missing.jsonl")], "no such answers file"),
    ]
    stranger = tmp_path / "stranger.jsonl"
    stranger.write_text(json.dumps({"question": "Who painted the ceiling of my kitchen?",
                                    "answer": Answer("Who painted the ceiling of my kitchen?", "Me").to_dict()}) + "\n")
    cases.append((["--recipe", "a", ok, "--answers", str(stranger)], "not HotpotQA questions"))
    for extra, message in cases:
        r = _run(base + extra, tmp_path, timeout=120)
        assert r.returncode == 2 and message in r.stderr, (extra, r.stderr)
    assert not (tmp_path / "cv" / "a").exists()  # every check runs before any training
