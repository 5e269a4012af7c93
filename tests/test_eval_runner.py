"""`citeagent eval` end to end: answers made elsewhere (with every kind of bad input), a policy
run on HotpotQA's per-question corpora, resuming, comparing, and the report."""
import json

import pytest

from citeagent.cli import main as citeagent_main
from citeagent.eval.compare import compare_runs, format_comparison
from citeagent.eval.judge import JudgeNotFound
from citeagent.train.judge import JudgeTrainConfig, train_judge
from citeagent.eval.runner import EvalConfig, EvalError, read_records, run_eval

DOCS = [
    {"id": "paris", "title": "Paris", "url": "https://ex.org/paris", "text": "Paris is the capital of France. It has the Louvre."},
    {"id": "rome", "title": "Rome", "url": "https://ex.org/rome", "text": "Rome is the capital of Italy.\n\nIt has the Colosseum."},
]
QUESTIONS = [
    {"id": "q1", "question": "What is the capital of France?", "answer": "Paris", "urls": ["https://ex.org/paris"]},
    {"id": "q2", "question": "What is the capital of Italy?", "answers": ["Rome"], "urls": ["https://ex.org/rome"]},
    {"id": "q3", "question": "Which museum is in Paris?", "answer": "the Louvre", "urls": ["https://ex.org/paris"]},
    {"id": "q4", "question": "What is in Rome?", "answer": "Colosseum"},
    {"id": "q5", "question": "Who?", "answer": "nobody"},
    {"id": "q6", "question": "Declined one?", "answer": "x"},
]
PARIS = {"title": "Paris", "url": "https://ex.org/paris", "text": "Paris is the capital of France."}
PREDICTIONS = [
    json.dumps({"id": "q1", "question": "What is the capital of France?", "answer": "Paris [1].", "quotes": [PARIS], "score": 0.9}),
    # dangling marker [2]
    json.dumps({"question": "What is the capital of Italy?", "answer": "Rome [1][2].",
                "quotes": [{"title": "Rome", "url": "https://ex.org/rome", "text": "Rome is the capital of Italy. It has"}]}),
    # quote from a document outside the corpus
    json.dumps({"id": "q3", "question": "Which museum is in Paris?", "answer": "The Louvre [1].",
                "quotes": [{"title": "Elsewhere", "url": "https://other.org/x", "text": "the Louvre"}]}),
    json.dumps({"id": "q4", "question": "What is in Rome?", "answer": "", "quotes": []}),  # empty answer
    "{this is not json",  # malformed line
    json.dumps({"id": "q5", "question": "Who?", "answer": "x", "quotes": [{"title": "no text"}]}),  # malformed quote
    json.dumps({"question": "Not in the data set?", "answer": "y"}),
    json.dumps({"id": "q1", "question": "What is the capital of France?", "answer": "again"}),  # second answer
    json.dumps({"id": "q6", "question": "Declined one?", "answer": "", "declined": True}),
]


@pytest.fixture()
def files(tmp_path):
    corpus = tmp_path / "docs.jsonl"
    corpus.write_text("".join(json.dumps(d) + "\n" for d in DOCS))
    qs = tmp_path / "qs.jsonl"
    qs.write_text("".join(json.dumps(q) + "\n" for q in QUESTIONS))
    preds = tmp_path / "preds.jsonl"
    preds.write_text("\n".join(PREDICTIONS) + "\n")
    return corpus, qs, preds


def _by_id(out):
    return {r["id"]: r for r in read_records(out / "records.jsonl")}


def test_external_predictions_every_bad_input_scored_with_a_reason(files, tmp_path):
    corpus, qs, preds = files
    out = tmp_path / "run"
    summary = run_eval(EvalConfig(dataset=str(qs), predictions=str(preds), corpus=str(corpus), judge="none",
                                  out=str(out), progress=False, bootstrap=200))
    recs = _by_id(out)
    assert set(recs) == {"q1", "q2", "q3", "q4", "q6", "line-5", "line-6", "line-7", "line-8"}
    good = recs["q1"]["metrics"]
    assert (good["em"], good["correct"], good["quote_verbatim_rate"], good["evidence_page_precision"],
            good["evidence_page_recall"]) == (1.0, 1.0, 1.0, 1.0, 1.0)
    assert recs["q1"]["score"] == 0.9
    # matched by question text; the quote spans a paragraph break, verbatim after whitespace normalisation
    q2 = recs["q2"]
    assert q2["metrics"]["quote_verbatim_rate"] == 1.0
    assert q2["metrics"]["n_dangling_markers"] == 1 and any("[2]" in r for r in q2["reasons"])
    q3 = recs["q3"]
    assert q3["metrics"]["quote_verbatim_rate"] == 0.0 and q3["metrics"]["evidence_page_precision"] == 0.0
    assert any("not in the corpus" in r for r in q3["reasons"])
    q4 = recs["q4"]
    assert (q4["metrics"]["em"], q4["metrics"]["f1"], q4["metrics"]["quote_verbatim_rate"]) == (0.0, 0.0, None)
    assert "empty answer" in q4["reasons"]
    for rid in ("line-5", "line-6"):  # malformed: a failure on every metric, with the reason
        assert recs[rid]["metrics"]["em"] == 0.0 and recs[rid]["metrics"]["quote_verbatim_rate"] == 0.0
        assert recs[rid]["error"].startswith("malformed prediction")
    assert "not JSON" in recs["line-5"]["error"] and "quote 1" in recs["line-6"]["error"]
    assert recs["line-7"]["unscored"] and "not in the data set" in recs["line-7"]["error"]
    assert recs["line-8"]["unscored"] and "second answer" in recs["line-8"]["error"]
    assert recs["q6"]["metrics"]["answered"] == 0.0 and "declined to answer" in recs["q6"]["reasons"]
    # the summary: 7 scored records (two unscored lines listed apart); em: q1 "Paris", q2 "Rome.",
    # q3 "The Louvre." are exact after normalisation -> 3 of 7
    assert summary["n_questions"] == 7 and summary["n_unscored_lines"] == 2
    assert summary["metrics"]["em"]["mean"] == pytest.approx(3 / 7)
    assert summary["n_bad_records"] == 2
    assert summary["judge"] is None and "not_measured" in summary
    assert (out / "summary.json").is_file()
    html = (out / "report.html").read_text()
    assert "Worst answers" in html and "data:image/png;base64" in html and "not JSON" in html


def test_resume_skips_finished_and_redoes_a_torn_line(files, tmp_path):
    corpus, qs, preds = files
    out = tmp_path / "run"
    cfg = dict(dataset=str(qs), predictions=str(preds), corpus=str(corpus), judge="none", out=str(out), progress=False,
               bootstrap=100)
    run_eval(EvalConfig(**cfg, limit=3))
    assert len(read_records(out / "records.jsonl")) == 3
    with pytest.raises(EvalError, match="--resume"):
        run_eval(EvalConfig(**cfg))
    with open(out / "records.jsonl", "a") as f:
        f.write('{"id": "torn", "metr')  # killed mid-write
    summary = run_eval(EvalConfig(**cfg, resume=True))
    ids = [r["id"] for r in read_records(out / "records.jsonl")]
    assert len(ids) == len(set(ids)) == 9 and "torn" not in ids
    assert summary["n_questions"] == 7
    with pytest.raises(EvalError, match="different"):
        run_eval(EvalConfig(**{**cfg, "corpus": "pydocs"}, resume=True))


def test_offset_splits_a_run_and_the_parts_merge_by_resuming(files, tmp_path):
    corpus, qs, preds = files
    cfg = dict(dataset=str(qs), predictions=str(preds), corpus=str(corpus), judge="none", progress=False, bootstrap=100)
    run_eval(EvalConfig(**cfg, offset=2, limit=3, out=str(tmp_path / "p")))
    assert [r["id"] for r in read_records(tmp_path / "p" / "records.jsonl")] == ["q3", "q4", "line-5"]

    # a policy run split in two, as two processes would: questions 1 and 2-3, merged into one run
    pol = dict(dataset="hotpotqa-distractor", policy="baseline", judge="none", progress=False, bootstrap=100,
               batch_size=2)
    run_eval(EvalConfig(**pol, limit=1, out=str(tmp_path / "a")))
    run_eval(EvalConfig(**pol, offset=1, limit=2, out=str(tmp_path / "b")))
    whole = ["5a8b57f25542995d1e6f1371", "5a85ea095542994775f606a8", "5a8e3ea95542995a26add48d"]
    assert [r["id"] for r in read_records(tmp_path / "b" / "records.jsonl")] == whole[1:]
    merged = tmp_path / "merged"
    merged.mkdir()
    (merged / "records.jsonl").write_text((tmp_path / "a" / "records.jsonl").read_text()
                                          + (tmp_path / "b" / "records.jsonl").read_text())
    before = (merged / "records.jsonl").read_text()
    summary = run_eval(EvalConfig(**pol, limit=3, out=str(merged), resume=True))
    assert summary["n_questions"] == 3 and (merged / "records.jsonl").read_text() == before  # nothing re-run

    with pytest.raises(EvalError, match="--offset must be 0 or more"):
        run_eval(EvalConfig(**pol, offset=-1, out=str(tmp_path / "c")))
    with pytest.raises(EvalError, match="skips every question"):
        run_eval(EvalConfig(**pol, offset=10**6, out=str(tmp_path / "c")))


def test_missing_judge_stops_the_run_before_any_work(files, tmp_path, monkeypatch):
    import citeagent.eval.judge

    # an install without the shipped judge (and none trained into CITEAGENT_HOME)
    monkeypatch.setattr(citeagent.eval.judge, "SHIPPED_JUDGE_DIR", tmp_path / "no-shipped-judge")
    corpus, qs, preds = files
    with pytest.raises(JudgeNotFound, match="--judge none"):
        run_eval(EvalConfig(dataset=str(qs), predictions=str(preds), corpus=str(corpus), out=str(tmp_path / "r"),
                            progress=False, build_judge=False))
    assert not (tmp_path / "r" / "records.jsonl").exists()


def test_the_default_judge_is_built_on_first_use_when_none_is_there(files, tmp_path, monkeypatch, capsys):
    import citeagent.eval.judge
    import citeagent.train.judge

    monkeypatch.setattr(citeagent.eval.judge, "SHIPPED_JUDGE_DIR", tmp_path / "no-shipped-judge")
    monkeypatch.setenv("CITEAGENT_HOME", str(tmp_path / "home"))  # no trained judge there either
    # the first-use training at toy size: the real one takes minutes
    monkeypatch.setattr(citeagent.train.judge, "FIRST_USE", dict(limit=10, max_steps=1, batch_size=4, max_length=64,
                                                                 threads=1, lora_r=4))
    corpus, qs, preds = files
    summary = run_eval(EvalConfig(dataset=str(qs), predictions=str(preds), corpus=str(corpus), out=str(tmp_path / "r"),
                                  progress=False, bootstrap=50))
    built = tmp_path / "home" / "judges" / "support-minilm"
    assert (built / "adapter_config.json").is_file() and (built / "judge_meta.json").is_file()
    assert summary["judge"]["heldout_accuracy"] is not None
    assert "training it once" in capsys.readouterr().err


def test_combined_reward_ranks_with_the_reward_model_named(files, tmp_path):
    """--reward-model is the combined reward's support model, as in `ask` and `train ppo`: a missing
    one stops the run naming that directory, not the default one."""
    corpus, qs, preds = files
    with pytest.raises(FileNotFoundError, match="my-support-rm"):
        run_eval(EvalConfig(dataset=str(qs), predictions=str(preds), corpus=str(corpus), judge="none",
                            combined_reward="support=1,harmless=0,rule=0", reward_model=str(tmp_path / "my-support-rm"),
                            safety_metrics=False, out=str(tmp_path / "r"), progress=False))
    assert not (tmp_path / "r" / "records.jsonl").exists()


def test_dataset_without_corpus_is_refused(tmp_path):
    with pytest.raises(EvalError, match="--corpus"):
        run_eval(EvalConfig(dataset="nq-open", limit=1, judge="none", out=str(tmp_path / "r"), progress=False))


@pytest.fixture(scope="module")
def tiny_judge(tmp_path_factory):
    out = tmp_path_factory.mktemp("judge")
    train_judge(JudgeTrainConfig(out=str(out), limit=10, max_steps=1, batch_size=4, max_length=64, threads=1), progress=False)
    return str(out)


def test_baseline_policy_on_hotpotqa_with_judge_resume_and_compare(tiny_judge, tmp_path, capsys):
    out = tmp_path / "hp"
    cfg = dict(dataset="hotpotqa-distractor", policy="baseline", judge=tiny_judge, out=str(out), progress=False,
               bootstrap=100, batch_size=2)
    run_eval(EvalConfig(**cfg, limit=2))
    run_eval(EvalConfig(**cfg, limit=3, resume=True))
    recs = read_records(out / "records.jsonl")
    assert [r["id"] for r in recs] == ["5a8b57f25542995d1e6f1371", "5a85ea095542994775f606a8", "5a8e3ea95542995a26add48d"]
    for r in recs:
        m = r["metrics"]
        assert r["trace"] and m["n_actions"] == len(r["trace"]) and m["seconds"] >= 0
        assert r["trace"][0]["action"].startswith("Search ")
        if r["answer"]["quotes"]:
            assert m["quote_verbatim_rate"] == 1.0  # our policies quote verbatim by construction
        for k in ("citation_recall", "citation_precision", "supported", "sp_f1", "joint_f1"):
            assert m[k] is None or 0.0 <= m[k] <= 1.0
        assert r["judge_trained_on_question"] is False  # the first questions are the judge's held-out ones
        assert r["score"] is not None
    summary = json.loads((out / "summary.json").read_text())
    assert summary["judge"]["heldout_accuracy"] is not None and summary["judge"]["questions_in_judge_training"] == 0
    assert summary["decline_curves"]["policy"][-1]["n_answered"] == 3

    # the run's records are a predictions file: scoring them again keeps traces and costs
    again = tmp_path / "again"
    run_eval(EvalConfig(dataset="hotpotqa-distractor", predictions=str(out / "records.jsonl"), judge="none",
                        out=str(again), progress=False, bootstrap=100))
    redo = {r["id"]: r for r in read_records(again / "records.jsonl")}
    for r in recs:
        assert redo[r["id"]]["trace"] == r["trace"] and redo[r["id"]]["score"] == r["score"]
        for k in ("sp_f1", "joint_f1", "f1", "n_actions", "seconds"):
            assert redo[r["id"]]["metrics"][k] == r["metrics"][k]
        assert "citation_recall" not in redo[r["id"]]["metrics"]  # --judge none this time

    cmp = compare_runs(out, out)
    assert cmp["n_shared"] == 3 and cmp["metrics"]["sp_f1"]["mean"] == 0.0
    assert citeagent_main(["eval", "--compare", str(out), str(out), "--out", str(tmp_path / "cmp")]) == 0
    printed = capsys.readouterr().out
    assert "3 questions in both" in printed and "sp_f1" in printed
    assert json.loads((tmp_path / "cmp" / "compare.json").read_text())["n_shared"] == 3
    assert "B-A" in format_comparison(cmp)


def test_compare_pairs_by_question(tmp_path):
    def write(run, vals):
        run.mkdir()
        (run / "records.jsonl").write_text("".join(
            json.dumps({"id": i, "metrics": {"em": v}}) + "\n" for i, v in vals.items()))
    write(tmp_path / "a", {"x": 0.0, "y": 1.0, "z": 0.0})
    write(tmp_path / "b", {"x": 1.0, "y": 1.0, "w": 1.0})
    cmp = compare_runs(tmp_path / "a", tmp_path / "b", n_resamples=200)
    # shared: x (0 -> 1), y (1 -> 1): mean difference .5
    assert (cmp["n_shared"], cmp["only_a"], cmp["only_b"]) == (2, 1, 1)
    assert cmp["metrics"]["em"]["mean"] == 0.5 and cmp["metrics"]["em"]["mean_a"] == 0.5
    write(tmp_path / "c", {"q": 1.0})
    with pytest.raises(ValueError, match="no question in common"):
        compare_runs(tmp_path / "a", tmp_path / "c")


def test_reward_model_scores_make_a_second_decline_curve(files, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from citeenv.search.embedder import minilm_path

    rm_dir = tmp_path / "rm"  # an untrained one-output model: the plumbing, not the ranking, is tested
    AutoModelForSequenceClassification.from_pretrained(minilm_path(), num_labels=1).save_pretrained(rm_dir)
    AutoTokenizer.from_pretrained(minilm_path()).save_pretrained(rm_dir)
    corpus, qs, preds = files
    out = tmp_path / "run"
    summary = run_eval(EvalConfig(dataset=str(qs), predictions=str(preds), corpus=str(corpus), judge="none",
                                  reward_model=str(rm_dir), out=str(out), progress=False, bootstrap=100))
    recs = _by_id(out)
    answered = [r for r in recs.values() if r["metrics"].get("answered") == 1.0]
    assert answered and all(isinstance(r["reward_score"], float) for r in answered)
    assert recs["q6"]["reward_score"] is None  # declined: nothing to score
    curve = summary["decline_curves"]["reward_model"]
    assert curve[-1]["n_answered"] == len(answered) and curve[-1]["coverage"] == pytest.approx(len(answered) / 7)


def test_asqa_answers_are_scored_against_a_corpus_the_user_names(tmp_path):
    corpus = tmp_path / "wiki.jsonl"
    corpus.write_text(json.dumps({"id": "daei", "title": "Ali Daei", "url": "https://en.wikipedia.org/wiki/Ali_Daei",
                                  "text": "Ali Daei scored 109 goals for Iran."}) + "\n")
    preds = tmp_path / "p.jsonl"
    preds.write_text(json.dumps({
        "question": "Who has the highest goals in world football?",
        "answer": "Ali Daei leads men's internationals [1]; Josef Bican leads all-time.",
        "quotes": [{"title": "Ali Daei", "url": "https://en.wikipedia.org/wiki/Ali_Daei", "text": "Ali Daei scored 109 goals"}],
    }) + "\n")
    summary = run_eval(EvalConfig(dataset="asqa", predictions=str(preds), corpus=str(corpus), judge="none",
                                  out=str(tmp_path / "run"), progress=False, bootstrap=100))
    (rec,) = read_records(tmp_path / "run" / "records.jsonl")
    # interpretations: Daei (found), Bican (found), Sinclair (not) -> STR-EM 2/3, not a full hit
    assert rec["metrics"]["str_em"] == pytest.approx(2 / 3) and rec["metrics"]["str_hit"] == 0.0
    assert rec["metrics"]["quote_verbatim_rate"] == 1.0
    assert summary["metrics"]["str_em"]["mean"] == pytest.approx(2 / 3)


def test_the_decline_curve_reads_the_cpu_agents_reward_model_too(files, tmp_path):
    import torch

    from citeagent.answer import Answer
    from citeagent.train.cpu_rm import AnswerRewardModel, RewardHead
    from tests.test_cpu_policy import WordEncoder

    torch.manual_seed(0)
    rm_dir = tmp_path / "cpu_rm"
    AnswerRewardModel(RewardHead(8), WordEncoder()).save(rm_dir)
    corpus, qs, preds = files
    out = tmp_path / "run"
    run_eval(EvalConfig(dataset=str(qs), predictions=str(preds), corpus=str(corpus), judge="none", out=str(out),
                        reward_model=str(rm_dir), progress=False, bootstrap=50))
    rec = _by_id(out)["q1"]
    rm = AnswerRewardModel.load(rm_dir)  # what eval loaded: the head over the policy's MiniLM
    answer = Answer.from_dict(rec["answer"])
    assert rec["reward_score"] == pytest.approx(rm.score(rec["question"], answer), abs=1e-5)
