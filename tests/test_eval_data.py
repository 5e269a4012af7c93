"""The evaluation data set loaders, on the real shared data, and HotpotQA scoring on a real
record."""
import json
import re

import pytest

from citeagent.answer import Answer, Quote
from citeagent.eval.datasets import (
    DatasetError, fever_title, load_dataset, load_jsonl_dataset,
)
from citeagent.eval.quote_metrics import corpus_lookup
from citeagent.eval.scoring import score_answer
from citeenv.sources import load_corpus


def test_hotpotqa_pooled_and_per_question():
    pooled = load_dataset("hotpotqa", limit=5)
    assert pooled.corpus == "hotpotqa" and not pooled.per_question_corpus
    first = pooled.examples[0]
    assert first.id == "5a8b57f25542995d1e6f1371"
    assert first.answers == ["yes"]
    assert first.gold_sentences == [("Scott Derrickson", 0), ("Ed Wood", 0)]
    per_q = load_dataset("hotpotqa-distractor", limit=2)
    assert per_q.per_question_corpus and per_q.examples[1].corpus == f"hotpotqa:{per_q.examples[1].id}"
    assert len(load_dataset("hotpotqa").examples) == 886


def test_nq_open_and_efficientqa():
    nq = load_dataset("nq-open", limit=3)
    assert nq.corpus is None
    assert nq.examples[0].question == "when was the last time anyone was on the moon"
    assert nq.examples[0].answers == ["14 December 1972 UTC", "December 1972"]
    assert len(load_dataset("nq-open").examples) == 3610
    assert len(load_dataset("efficientqa").examples) == 1800


def test_asqa_short_answers_per_interpretation():
    ds = load_dataset("asqa", limit=2)
    ex = ds.examples[0]
    assert ex.id == "-7013890438520559398"
    assert ex.question == "Who has the highest goals in world football?"
    assert ex.answer_groups == [["Daei", "Ali Daei"], ["Bican", "Josef Bican"], ["Sinclair", "Christine Sinclair"]]
    assert "Josef Bican" in ex.answers
    assert len(load_dataset("asqa").examples) == 948


def test_fever_claims_labels_and_evidence():
    ds = load_dataset("fever", limit=3)
    nei, _, sup = ds.examples
    assert nei.meta["label"] == "NOT ENOUGH INFO" and nei.gold_sentences is None
    assert sup.meta["claim"] == "Fox 2000 Pictures released the film Soul Food."
    assert sup.answers[0] == "true"
    assert sup.gold_sentences == [("Soul Food (film)", 0)]
    assert sup.gold_urls == ["https://en.wikipedia.org/wiki/Soul_Food_%28film%29"]
    assert fever_title("Soul_Food_-LRB-film-RRB-") == "Soul Food (film)"


def test_datasets_without_a_corpus_can_take_one():
    ds = load_dataset("nq-open", limit=1, corpus="hotpotqa")
    assert ds.corpus == "hotpotqa"
    with pytest.raises(DatasetError, match="Unknown data set"):
        load_dataset("no-such-set")


def test_user_jsonl_keeps_good_lines_and_says_why_bad_ones_went(tmp_path):
    path = tmp_path / "qs.jsonl"
    path.write_text("\n".join([
        json.dumps({"id": "a", "question": "Q1?", "answer": "x", "urls": ["https://h/p"]}),
        "{not json",
        json.dumps({"question": "Q2?"}),  # no answers
        json.dumps({"question": "Q3?", "answers": ["y", "z"], "supporting_facts": [["T", 1]]}),
        json.dumps({"id": "a", "question": "again", "answer": "w"}),
    ]) + "\n")
    ds = load_jsonl_dataset(path)
    assert [e.question for e in ds.examples] == ["Q1?", "Q3?"]
    assert ds.examples[0].gold_urls == ["https://h/p"] and ds.examples[1].gold_sentences == [("T", 1)]
    assert len(ds.skipped) == 3
    assert "line 2" in ds.skipped[0] and "answers" in ds.skipped[1] and "duplicate" in ds.skipped[2]
    bad = tmp_path / "bad.jsonl"
    bad.write_text("nonsense\n")
    with pytest.raises(DatasetError, match="no usable question"):
        load_jsonl_dataset(bad)


def test_hotpot_supporting_facts_and_joint_on_a_real_record():
    ds = load_dataset("hotpotqa-distractor", limit=1)
    ex = ds.examples[0]  # Scott Derrickson / Ed Wood, gold ("Scott Derrickson", 0), ("Ed Wood", 0)
    corpus = load_corpus(ex.corpus)
    lookup = corpus_lookup(corpus)
    sd, ew, film = corpus.get("Scott Derrickson"), corpus.get("Ed Wood"), corpus.get("Ed Wood (film)")

    def first_sentence(doc):
        s, e = doc.meta["sentences"][0]
        return doc.text[s:e].strip()

    gold_answer = Answer(ex.question, "Yes [1][2].", [
        Quote(1, sd.title, sd.url, first_sentence(sd)), Quote(2, ew.title, ew.url, first_sentence(ew))])
    m = score_answer(ex, gold_answer, lookup)["metrics"]
    assert (m["sp_em"], m["sp_precision"], m["sp_recall"], m["sp_f1"]) == (1.0, 1.0, 1.0, 1.0)
    assert (m["em"], m["joint_em"], m["joint_f1"]) == (1.0, 1.0, 1.0)

    # One gold sentence plus a distractor sentence, answer "no": sp tp=1 fp=1 fn=1 -> P=R=F1=.5;
    # HotpotQA scores "no" against "yes" as 0, so every joint metric is 0.
    wrong = Answer(ex.question, "No [1][2].", [
        Quote(1, sd.title, sd.url, first_sentence(sd)), Quote(2, film.title, film.url, first_sentence(film))])
    scored = score_answer(ex, wrong, lookup)
    m = scored["metrics"]
    assert (m["sp_precision"], m["sp_recall"], m["sp_f1"], m["sp_em"]) == (0.5, 0.5, 0.5, 0.0)
    assert (m["em"], m["joint_f1"], m["joint_em"]) == (0.0, 0.0, 0.0)
    assert scored["quoted_sentences"] == [["Ed Wood (film)", 0], ["Scott Derrickson", 0]]
    assert any("('Ed Wood', 0)" in r for r in scored["reasons"])

    # A long answer: the answer words are right but HotpotQA's answer P/R on "yes" is 0 (the
    # yes/no rule); our `correct` (answer contained) still sees it.
    long = Answer(ex.question, "Yes, both were American [1][2].", gold_answer.quotes)
    m = score_answer(ex, long, lookup)["metrics"]
    assert (m["em"], m["correct"], m["joint_f1"], m["sp_f1"]) == (0.0, 1.0, 0.0, 1.0)


def test_hotpotqa_records_without_an_id_get_a_unique_one():
    ds = load_dataset("hotpotqa-distractor")
    ids = [e.id for e in ds.examples]
    assert len(set(ids)) == len(ids) == 886
    made = [e for e in ds.examples if e.id.startswith("hotpot-")]
    assert len(made) == 35  # the shared split has 35 records whose _id is null
    # their own paragraphs make their corpus, though `hotpotqa:<_id>` could not find them
    from citeagent.eval.datasets import example_corpus

    corpus = example_corpus(made[0])
    assert len(corpus) == 10 and all(corpus.get(t) is not None for t, _ in made[0].gold_sentences)


def _hub_row(r, **change):
    """A record in the hub's schema (`id`, columns of parallel lists), as `hotpotqa/hotpot_qa` serves it."""
    return {"id": r["_id"], "question": r["question"], "answer": r["answer"], "type": r["type"], "level": r["level"],
            "supporting_facts": {"title": [t for t, _ in r["supporting_facts"]], "sent_id": [i for _, i in r["supporting_facts"]]},
            "context": {"title": [t for t, _ in r["context"]], "sentences": [s for _, s in r["context"]]}} | change


def test_another_hotpotqa_source_leaves_out_the_shared_split(tmp_path, monkeypatch):
    """`hotpotqa-distractor:SOURCE` reads the full dev set by hub name; here a local parquet file in
    the hub's schema stands in for it. Every question of the shared split is left out, matched by
    id or by question text (35 shared records have no id), so what remains was never trained on."""
    import datasets

    from citeagent.eval.runner import EvalConfig, run_eval
    from citeenv.sources.hotpotqa import read_hotpotqa_records

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")
    shared = list(read_hotpotqa_records())
    null_id = next(r for r in shared if r["_id"] in (None, "None"))
    rows = [_hub_row(shared[0]),  # held out
            _hub_row(shared[5], id="fresh-1", question="Were Scott Derrickson and Ed Wood of the same nationality, truly?"),
            _hub_row(null_id, id="other-id"),  # the same question under another id: still shared
            _hub_row(shared[700]),  # a training question
            _hub_row(shared[9], id="fresh-2", question="  " + shared[9]["question"].upper() + " (reworded)")]
    src = tmp_path / "validation.parquet"
    datasets.Dataset.from_list(rows).to_parquet(str(src))
    ds = load_dataset(f"hotpotqa-distractor:{src}")
    assert [e.id for e in ds.examples] == ["fresh-1", "fresh-2"] and ds.per_question_corpus
    assert "3 question(s) of the shared split left out" in ds.description
    assert ds.examples[0].gold_sentences == [(t, i) for t, i in shared[5]["supporting_facts"]]
    assert [e.id for e in load_dataset(f"hotpotqa-distractor:{src}", limit=1).examples] == ["fresh-1"]
    # An evaluation runs on them, each over its own paragraphs, with supporting-fact F1 measured.
    out = tmp_path / "run"
    summary = run_eval(EvalConfig(dataset=f"hotpotqa-distractor:{src}", policy="baseline", judge="none", out=str(out),
                                  progress=False, bootstrap=20))
    assert summary["n_questions"] == 2 and summary["metrics"]["sp_f1"]["n"] == 2
    assert "3 question(s) of the shared split left out" in summary["dataset"]["description"]
    for bad, message in [("", "names no source"), (str(tmp_path / "missing.json"), "No such HotpotQA file"),
                         (str(_only_shared(tmp_path, shared)), "holds no question outside the shared split (2 left out")]:
        with pytest.raises(DatasetError, match=re.escape(message)):
            load_dataset(f"hotpotqa-distractor:{bad}")


def _only_shared(tmp_path, shared):
    path = tmp_path / "shared_only.json"  # the official release's layout: one JSON array
    path.write_text(json.dumps(shared[:2]))
    return path


def test_untouched_training_questions_make_a_data_set(tmp_path):
    """scripts/untouched_questions.py leaves out every training question a demonstration file, an
    answer file or a PPO run (replayed from its cursor) used, and nothing else; its output is an
    eval data set with gold sentences."""
    import subprocess
    import sys

    from citeagent.eval.datasets import hotpotqa_split
    from citeagent.reward.gold_judge import read_hotpot_records
    from citeagent.train.ppo import question_indices
    from feedback_support import REPO

    train = hotpotqa_split(read_hotpot_records())[0]
    demos, answers, run = tmp_path / "demos.jsonl", tmp_path / "answers.jsonl", tmp_path / "ppo"
    demos.write_text("".join(json.dumps({"question": r["question"], "steps": []}) + "\n" for r in train[:2]))
    # the same question with other spacing and case still counts as used
    answers.write_text(json.dumps({"question": "  " + train[5]["question"].upper(), "text": "x"}) + "\n")
    (run / "checkpoint").mkdir(parents=True)
    (run / "checkpoint" / "trainer_state.json").write_text(json.dumps(
        {"cursor": 3, "config": {"dataset": "hotpotqa", "seed": 1}}))
    used = {0, 1, 5, *question_indices(len(train), 0, 3, 1)}
    out = tmp_path / "fresh.jsonl"
    cmd = [sys.executable, "scripts/untouched_questions.py", "--demos", str(demos), "--answers", str(answers),
           "--ppo", str(run), "--out", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads(r.stdout)["fresh"] == len(train) - len(used)
    ds = load_dataset(str(out), corpus="hotpotqa")
    assert [e.question for e in ds.examples] == [r["question"].strip() for i, r in enumerate(train) if i not in used]
    assert ds.examples[0].gold_sentences == [(t, s) for t, s in train[2]["supporting_facts"]]

    answers.write_text('{"text": "no question"}\n')
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert r.returncode == 2 and "answers.jsonl line 1: not a JSON object with a \"question\"" in r.stderr
    r = subprocess.run(cmd[:4] + ["--ppo", str(tmp_path), "--out", str(out)], capture_output=True, text=True,
                       cwd=REPO, timeout=300)
    assert r.returncode == 2 and "no checkpoint/trainer_state.json" in r.stderr
