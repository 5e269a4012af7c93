"""Best-of-n rejection sampling: the KL formula, the best-of-k estimator against brute force, the
choice among real sampled episodes of a tiny random LM, the CLI (`ask` and `eval --best-of`), and
the over-optimisation script's arithmetic.

The LM is a 2-layer random Llama with SmolLM2's real tokenizer; the browser's scaffold (guided
policy) makes it search, open, quote and answer, with random words for the free text, so its
candidates really differ from one another."""
import importlib.util
import itertools
import json
import math
import sys
from pathlib import Path

import pytest
import torch

from citeagent.cli import main as cli_main
from citeagent.policies.baseline import BaselinePolicy
from citeagent.policies.best_of_n import best_of_n, choose, expected_best_of_k, kl_bon, rank_order
from citeagent.policies.lm import LMPolicy, save_policy_options
from citeagent.rollout import browser_config, run_episodes
from citeenv.corpus import Corpus
from citeenv.documents import Document
from citeenv.local import LocalBackend
from citeenv.search.base import Hit
from lm_support import one_thread, smollm2_tokenizer, tiny_llama  # noqa: F401 (fixture)

REPO = Path(__file__).resolve().parents[1]

DOCS = [
    {"id": "paris", "title": "Paris", "url": "https://ex.org/paris", "text": "Paris is the capital of France. It has the Louvre."},
    {"id": "rome", "title": "Rome", "url": "https://ex.org/rome", "text": "Rome is the capital of Italy.\n\nIt has the Colosseum."},
]
QUESTIONS = ["What is the capital of France?", "What is in Rome?"]
FAST = {"max_new_tokens": 12, "max_answer_tokens": 16}  # the random model's words are noise; keep them short


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_thread):
    yield


@pytest.fixture(scope="module")
def tokenizer():
    tok = smollm2_tokenizer()
    return tok


@pytest.fixture(scope="module")
def tiny_model(tokenizer):
    return tiny_llama(tokenizer, max_positions=2048)


class ListEverything:
    """A searcher that lists every passage: the random model's queries are nonsense words, and this
    lets its episodes reach pages, quotes and answers anyway."""
    name = "list-everything"

    def __init__(self, corpus):
        self.corpus = corpus

    def search(self, query, k=10):
        return [Hit(p.id, p.doc_id, 1.0, r) for r, p in enumerate(self.corpus.passages[:k])]


@pytest.fixture(scope="module")
def backend():
    corpus = Corpus([Document(**d) for d in DOCS], name="tiny")
    return LocalBackend(corpus, ListEverything(corpus))


class LengthScorer:
    """A reward model whose scores are known: the answer's length in characters."""

    def __init__(self):
        self.calls = 0

    def score_batch(self, questions, answers):
        self.calls += 1
        assert len(questions) == len(answers)
        return [float(len(a.text)) for a in answers]


def policy(model, tokenizer, **kw):
    return LMPolicy(model=model, tokenizer=tokenizer, **FAST, **kw)


# --- the arithmetic ---------------------------------------------------------------------------

def test_kl_bon_by_hand():
    assert kl_bon(1) == 0.0
    assert kl_bon(4) == pytest.approx(1.3862944 - 0.75, abs=1e-6)
    assert kl_bon(2) == pytest.approx(0.6931472 - 0.5, abs=1e-6)
    with pytest.raises(ValueError, match="n >= 1"):
        kl_bon(0)


def test_choose_prefers_answered_then_score_then_first():
    # index 1 scores as high as 2 but did not answer; 2 and 4 tie, the first sampled wins
    assert choose([5.0, 9.0, 9.0, 2.0, 9.0], [True, False, True, True, True]) == 2
    assert choose([1.0, 3.0], [False, False]) == 1  # nobody answered: the score still decides
    assert choose([0.5, 0.5, 0.5], [True, True, True]) == 0


def test_expected_best_of_k_small_example_by_hand():
    # subsets of 2 from scores [3, 1, 2]: {0,1} -> 30, {0,2} -> 30, {1,2} -> 20
    assert expected_best_of_k([3, 1, 2], [True] * 3, [30, 10, 20], 2) == pytest.approx(80 / 3)
    assert expected_best_of_k([3, 1, 2], [True] * 3, [30, 10, 20], 1) == pytest.approx(20)  # the plain mean
    assert expected_best_of_k([3, 1, 2], [True] * 3, [30, 10, 20], 3) == pytest.approx(30)  # the argmax


def test_expected_best_of_k_equals_brute_force_over_all_subsets():
    scores = [0.3, 1.2, -0.5, 1.2, 0.9, 2.0, 0.1]
    answered = [True, True, True, True, True, False, True]  # the top score did not answer
    values = [0.1, 0.8, 0.0, 0.4, 0.6, 0.9, 0.2]
    n = len(scores)
    for k in range(1, n + 1):
        picks = []
        for subset in itertools.combinations(range(n), k):
            answering = [i for i in subset if answered[i]] or list(subset)
            top = max(scores[i] for i in answering)
            picks.append(values[min(i for i in answering if scores[i] == top)])  # ties: the first
        assert expected_best_of_k(scores, answered, values, k) == pytest.approx(sum(picks) / len(picks)), k
    assert rank_order(scores, answered)[-1] == 1  # 1 and 3 tie at 1.2 among the answered: 1 is first


# --- sampling and choosing ----------------------------------------------------------------------

def test_best_of_n_chooses_the_highest_scored_of_the_sampled_candidates(backend, tiny_model, tokenizer):
    pol = policy(tiny_model, tokenizer)  # greedy: best-of-n samples at temperature 1 and restores it
    scorer = LengthScorer()
    config = browser_config(pol, max_actions=6)
    picked = best_of_n(backend, pol, QUESTIONS, 4, scorer, seed=3, batch_size=8, config=config)
    assert pol.config.temperature == 0.0 and scorer.calls == 1
    assert [b.result.question for b in picked] == QUESTIONS
    for b in picked:
        assert b.n == 4 and len(b.candidates) == 4 and b.kl_bon == pytest.approx(math.log(4) - 0.75)
        assert b.scores == [float(len(c.answer.text)) for c in b.candidates]
        assert b.result is b.candidates[b.chosen]
        # the candidates are different samples, not one episode four times
        assert len({tuple(s["action"] for s in c.trace) for c in b.candidates}) > 1
        for i, c in enumerate(b.candidates):
            assert b.answered[i] == (not c.answer.declined and not c.truncated and bool(c.answer.text.strip()))
            if i == b.chosen:
                continue
            beaten = (b.answered[b.chosen] and not b.answered[i]) or (b.answered[b.chosen] == b.answered[i] and (
                b.scores[i] < b.score or (b.scores[i] == b.score and i > b.chosen)))
            assert beaten, (i, b.scores, b.answered, b.chosen)
    assert any(any(b.answered) for b in picked), "the scaffold should lead some candidates to an answer"
    # With this seed the best candidate is not at the same place for every question, so a rule that
    # ignored the scores (always the first, always the last) fails here.
    assert len({b.chosen for b in picked}) > 1, [b.scores for b in picked]
    # the same seed draws the same candidates again
    again = best_of_n(backend, pol, QUESTIONS, 4, LengthScorer(), seed=3, batch_size=8, config=config)
    assert [b.scores for b in again] == [b.scores for b in picked]


class ScriptedBrowsing:
    """Searches `searches[question]` times, then answers; every batched call takes one tick of `clock`."""
    name = "scripted"

    def __init__(self, searches, clock):
        self.searches, self.clock, self.calls = searches, clock, {}

    def act_batch(self, observations, infos):
        self.clock.now += 1.0
        out = []
        for info in infos:
            q = info["question"]
            self.calls[q] = self.calls.get(q, 0) + 1
            if info["phase"] == "answer":
                out.append("An answer.")
            else:
                out.append("Search capital" if self.calls[q] <= self.searches[q] else "End: Answer")
        return out


def test_an_episode_is_charged_its_share_of_each_batched_step(backend, monkeypatch):
    # A fake clock makes the shares exact: one tick a step, split among the rows live in it.
    clock = type("Clock", (), {"now": 0.0})()
    monkeypatch.setattr("citeagent.rollout.time.perf_counter", lambda: clock.now)
    short, long = QUESTIONS
    results = run_episodes(backend, ScriptedBrowsing({short: 0, long: 2}, clock), [short, long], batch_size=2)
    assert [r.n_actions for r in results] == [2, 4]
    # Steps 1-2 hold both rows (half a tick each); steps 3-4 the long one alone.
    assert [r.seconds for r in results] == [1.0, 3.0]
    assert sum(r.seconds for r in results) == clock.now
    alone = run_episodes(backend, ScriptedBrowsing({short: 0}, clock), [short], batch_size=1)
    assert alone[0].seconds == 2.0


def test_best_of_one_is_a_plain_run(backend, tiny_model, tokenizer):
    config = browser_config(policy(tiny_model, tokenizer), max_actions=6)
    plain = run_episodes(backend, policy(tiny_model, tokenizer), QUESTIONS, seed=0, config=config)
    pol = policy(tiny_model, tokenizer)
    picked = best_of_n(backend, pol, QUESTIONS, 1, LengthScorer(), seed=0, config=config)
    assert pol.config.temperature == 0.0
    for p, b in zip(plain, picked):
        assert (b.n, b.chosen, b.kl_bon) == (1, 0, 0.0)
        assert [s["action"] for s in b.result.trace] == [s["action"] for s in p.trace]
        assert b.result.answer.to_dict() == p.answer.to_dict()


def test_a_deterministic_policy_cannot_be_best_of_n(backend):
    with pytest.raises(ValueError, match="--best-of 3 needs a sampling policy"):
        best_of_n(backend, BaselinePolicy(), QUESTIONS, 3, LengthScorer())


# --- the command line ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def dirs(tmp_path_factory, tiny_model, tokenizer):
    """A tiny LM directory, a tiny reward model directory and a two-document corpus file."""
    from citeagent.reward.model import RewardModel, build_backbone

    root = tmp_path_factory.mktemp("bon")
    lm = root / "lm"
    tiny_model.save_pretrained(lm)
    tokenizer.save_pretrained(lm)
    save_policy_options(lm, policy=FAST, browser={})
    model, rm_tok = build_backbone("tiny")
    rm = RewardModel(model, rm_tok, max_length=128).save(root / "rm")
    corpus = root / "docs.jsonl"
    corpus.write_text("".join(json.dumps(d) + "\n" for d in DOCS))
    qs = root / "qs.jsonl"
    qs.write_text("".join(json.dumps({"id": f"q{i}", "question": q, "answer": a}) + "\n"
                          for i, (q, a) in enumerate(zip(QUESTIONS, ["Paris", "Colosseum"]))))
    return {"lm": lm, "rm": rm, "corpus": corpus, "qs": qs, "root": root}


def test_ask_best_of_two_prints_the_kl_line(dirs, capsys):
    rc = cli_main(["ask", QUESTIONS[0], "--corpus", str(dirs["corpus"]), "--policy", str(dirs["lm"]),
                   "--best-of", "2", "--reward-model", str(dirs["rm"]), "--max-actions", "5"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    line = [ln for ln in out.out.splitlines() if ln.startswith("best of 2 by reward model")]
    assert len(line) == 1 and line[0].endswith(f"KL_bon {math.log(2) - 0.5:.3f} nats)"), out.out
    rc = cli_main(["ask", QUESTIONS[0], "--corpus", str(dirs["corpus"]), "--policy", str(dirs["lm"]),
                   "--best-of", "2", "--reward-model", str(dirs["rm"]), "--max-actions", "5", "--json"])
    best = json.loads(capsys.readouterr().out)["best_of"]
    assert rc == 0 and best["n"] == 2 and len(best["scores"]) == 2 and best["score"] == best["scores"][best["chosen"]]


def test_rerank_chooses_again_among_the_stored_candidates(dirs):
    """An eval run keeps every candidate; another reward model picks among the same samples, and
    the script's predictions file is what `citeagent eval --predictions` scores."""
    import subprocess

    from citeagent.eval.runner import EvalConfig, read_records, run_eval
    from citeagent.policies.best_of_n import rerank
    from citeagent.reward.model import load_reward_model

    out = dirs["root"] / "eval_rerank"
    run_eval(EvalConfig(dataset=str(dirs["qs"]), corpus=str(dirs["corpus"]), policy=str(dirs["lm"]), judge="none",
                        reward_model=str(dirs["rm"]), out=str(out), max_actions=5, progress=False, bootstrap=50, best_of=3))
    recs = read_records(out / "records.jsonl")
    for r in recs:
        b = r["best_of"]
        assert len(b["answers"]) == 3 and b["answers"][b["chosen"]] == r["answer"]
    # The run's own reward model, scoring the stored answers again, gives the run's choice.
    same = rerank(recs, load_reward_model(dirs["rm"]))
    assert [x["chosen"] for x in same] == [r["best_of"]["chosen"] for r in recs]
    for r, x in zip(recs, same):
        assert x["score"] == pytest.approx(r["best_of"]["scores"][x["chosen"]], abs=1e-4)
    # Known scores: the longest answered candidate wins, ties to the first.
    for r, x in zip(recs, rerank(recs, LengthScorer())):
        b = r["best_of"]
        expect = choose([float(len(a["text"])) for a in b["answers"]], b["answered"])
        assert (x["id"], x["chosen"], x["text"]) == (r["id"], expect, b["answers"][expect]["text"])
    pred = dirs["root"] / "rerank.jsonl"
    run = subprocess.run([sys.executable, "scripts/rerank_best_of.py", str(out / "records.jsonl"), "--reward-model",
                          str(dirs["rm"]), "--out", str(pred)], capture_output=True, text=True, cwd=REPO, timeout=600)
    assert run.returncode == 0 and "2 questions; the reward model chose another candidate than the run's for 0" in run.stdout, run.stderr
    summary = run_eval(EvalConfig(dataset=str(dirs["qs"]), corpus=str(dirs["corpus"]), predictions=str(pred), judge="none",
                                  progress=False, out=str(dirs["root"] / "eval_rerank_scored"), bootstrap=50))
    assert summary["n_questions"] == 2 and summary["n_bad_records"] == 0
    scored = {r["id"]: r["answer"]["text"] for r in read_records(dirs["root"] / "eval_rerank_scored" / "records.jsonl")}
    assert scored == {x["id"]: x["text"] for x in same}
    old = [{**recs[0], "best_of": {k: v for k, v in recs[0]["best_of"].items() if k != "answers"}}]
    with pytest.raises(ValueError, match="no stored best-of-n candidates"):
        rerank(old, LengthScorer())
    # The script checks the records before loading a reward model: with no model at all, the
    # records' own problem is the one reported.
    old_file = dirs["root"] / "old_records.jsonl"
    old_file.write_text(json.dumps(old[0]) + "\n")
    run = subprocess.run([sys.executable, "scripts/rerank_best_of.py", str(old_file), "--reward-model",
                          str(dirs["root"] / "no-rm"), "--out", str(pred)], capture_output=True, text=True, cwd=REPO,
                         timeout=600)
    assert run.returncode == 2 and "no stored best-of-n candidates" in run.stderr, run.stderr


@pytest.mark.parametrize("extra, message", [
    (["--policy", "baseline"], "--best-of 2 needs a sampling policy"),  # the baseline
    (["--policy", "LM", "--reward-model", "NONE"], "citeagent train rm"),
    (["--best-of", "0"], "--best-of must be at least 1"),
    (["--policy", "LM", "--device", "nowhere"], "--device 'nowhere' is not a device; use auto, cpu"),
    (["--policy", "LM", "--dtype", "int8"], "--dtype 'int8' is not a floating-point torch dtype"),
])
def test_ask_best_of_bad_input_gets_one_clear_line(dirs, capsys, extra, message):
    extra = [str(dirs["lm"]) if x == "LM" else str(dirs["root"] / "no-rm") if x == "NONE" else x for x in extra]
    argv = ["ask", QUESTIONS[0], "--corpus", str(dirs["corpus"]), "--best-of", "2", *extra]
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err


def test_eval_best_of_records_summary_report_and_resume(dirs):
    from citeagent.eval.runner import EvalConfig, EvalError, read_records, run_eval

    out = dirs["root"] / "eval"
    cfg = dict(dataset=str(dirs["qs"]), corpus=str(dirs["corpus"]), policy=str(dirs["lm"]), judge="none",
               reward_model=str(dirs["rm"]), out=str(out), max_actions=5, progress=False, bootstrap=50)
    summary = run_eval(EvalConfig(**cfg, best_of=2))
    assert summary["best_of"] == 2 and summary["kl_bon"] == pytest.approx(math.log(2) - 0.5)
    recs = read_records(out / "records.jsonl")
    assert len(recs) == 2
    for r in recs:
        b = r["best_of"]
        assert b["n"] == 2 and len(b["scores"]) == 2 and b["chosen"] in (0, 1)
        assert b["kl_bon"] == pytest.approx(math.log(2) - 0.5, abs=1e-6)
    assert "KL_bon 0.193 nats" in (out / "report.html").read_text()
    with pytest.raises(EvalError, match="best_of"):  # a best-of-3 run cannot continue a best-of-2 one
        run_eval(EvalConfig(**cfg, best_of=3, resume=True))
    with pytest.raises(EvalError, match="needs a sampling policy"):
        run_eval(EvalConfig(**{**cfg, "policy": "baseline", "out": str(dirs["root"] / "e2")}, best_of=2))


def test_eval_bad_device_stops_before_anything_runs_or_is_written(dirs, capsys):
    out = dirs["root"] / "eval_bad_device"
    argv = ["eval", "--dataset", str(dirs["qs"]), "--corpus", str(dirs["corpus"]), "--policy", str(dirs["lm"]),
            "--judge", "none", "--out", str(out), "--no-progress"]
    assert cli_main([*argv, "--device", "nowhere"]) == 2
    assert "--device 'nowhere' is not a device" in capsys.readouterr().err and not out.exists()
    assert cli_main([*argv, "--max-actions", "5", "--device", "cpu", "--bootstrap", "20"]) == 0
    assert json.loads((out / "config.json").read_text())["device"] == "cpu"


# --- the over-optimisation script ---------------------------------------------------------------

@pytest.fixture(scope="module")
def overopt():
    path = REPO / "scripts" / "overoptimization.py"
    spec = importlib.util.spec_from_file_location("overoptimization", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_overoptimization_points_from_a_saved_sweep_and_a_ppo_log(overopt, tmp_path, capsys):
    sweep = {"questions": [
        {"proxy": [1.0, 3.0, 2.0, 0.0], "answered": [True] * 4, "gold": [0.5, 0.1, 0.3, 0.0]},
        {"proxy": [0.0, 1.0, 2.0, 3.0], "answered": [True, True, True, False], "gold": [0.0, 0.2, 0.4, 0.9]},
    ]}
    (tmp_path / "sweep.json").write_text(json.dumps(sweep))
    log = tmp_path / "log.jsonl"
    log.write_text("\n".join(json.dumps(r) for r in [
        {"iteration": 1, "reward": 0.5, "gold_reward": 0.2, "kl": 0.25},
        {"event": "checkpoint"},
        {"iteration": 0, "reward": 0.1, "gold_reward": 0.3, "kl": 0.0},
    ]) + "\n")
    png = tmp_path / "chart.png"
    assert overopt.main(["--bon-json", str(tmp_path / "sweep.json"), "--ppo-log", str(log), "--out", str(png)]) == 0
    res = json.loads(capsys.readouterr().out)
    assert png.stat().st_size > 1000
    bon = {p["k"]: p for p in res["best_of_n"]}
    assert sorted(bon) == [1, 2, 4]
    # k=1: the mean of all samples; k=4: the chosen one (question 2's top score did not answer)
    assert bon[1]["proxy"] == pytest.approx((6 / 4 + 6 / 4) / 2) and bon[1]["gold"] == pytest.approx((0.9 / 4 + 1.5 / 4) / 2)
    assert bon[4]["proxy"] == pytest.approx((3.0 + 2.0) / 2) and bon[4]["gold"] == pytest.approx((0.1 + 0.4) / 2)
    assert bon[4]["proxy_rel"] == pytest.approx(bon[4]["proxy"] - bon[1]["proxy"])
    # per question, best-of-4 - best-of-1 gold: 0.1 - 0.225 and 0.4 - 0.375
    assert bon[1]["gold_gain"] is None and bon[4]["gold_gain"]["n"] == 2
    assert bon[4]["gold_gain"]["mean"] == pytest.approx(((0.1 - 0.225) + (0.4 - 0.375)) / 2)
    assert res["sweep"]["gold_of_gold_judges_pick"] == pytest.approx((0.5 + 0.9) / 2)
    assert res["sweep"]["samples"] == 8 and -1.0 <= res["sweep"]["proxy_gold_correlation"] <= 1.0
    assert bon[4]["sqrt_kl"] == pytest.approx(math.sqrt(math.log(4) - 0.75))
    ppo = res["ppo"]
    assert [p["iteration"] for p in ppo] == [0, 1]
    assert ppo[1]["sqrt_kl"] == pytest.approx(0.5)
    assert ppo[1]["proxy_rel"] == pytest.approx(0.4) and ppo[1]["gold_rel"] == pytest.approx(-0.1)


def test_overoptimization_needs_some_input(overopt, tmp_path, capsys):
    assert overopt.main(["--out", str(tmp_path / "x.png")]) == 2
    assert "nothing to plot" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_overoptimization_answer_rows_train_a_reward_model_on_the_gold_judge(overopt, tmp_path):
    """The sweep's --answers-out rows are what `train rm --data hotpotqa-gold:PATH` reads: the
    answered candidates only, labelled by the gold judge."""
    from types import SimpleNamespace

    from citeagent.answer import Answer, Quote
    from citeagent.reward.gold_judge import read_hotpot_records
    from citeagent.reward.sources import load_source

    record = read_hotpot_records(limit=1)[0]
    title, sid = record["supporting_facts"][0]
    sentence = dict((t, s) for t, s in record["context"])[title][sid]
    q = record["question"]
    good = Answer(question=q, text=f"{record['answer']} [1].", quotes=[Quote(n=1, title=title, url="", text=sentence)])
    bad = Answer(question=q, text="Nobody knows.")
    unanswered = Answer(question=q, text="", declined=True)
    cands = [SimpleNamespace(answer=a) for a in (bad, unanswered, good)]
    rows = overopt.answer_rows(q, cands, [True, False, True])
    assert len(rows) == 2 and all(r.endswith("\n") for r in rows)
    path = tmp_path / "answers.jsonl"
    path.write_text("".join(rows))
    comps, stats = load_source(f"hotpotqa-gold:{path}")
    assert stats.kept == 1 and comps[0].answer_0.text == "Nobody knows." and comps[0].label() == 0.0


def test_eval_sample_runs_one_sampled_episode_the_best_of_one_baseline(dirs):
    """`eval --sample` is best-of-n's k = 1 point: one episode per question at --temperature, not
    the greedy one. The tiny LM's greedy answers repeat exactly; its sampled ones do not."""
    from citeagent.eval.runner import EvalConfig, EvalError, read_records, run_eval

    cfg = dict(dataset=str(dirs["qs"]), corpus=str(dirs["corpus"]), policy=str(dirs["lm"]), judge="none",
               max_actions=5, progress=False, bootstrap=50)

    def answers(name, **kw):
        run_eval(EvalConfig(**cfg, out=str(dirs["root"] / name), **kw))
        return [r["answer_text"] for r in read_records(dirs["root"] / name / "records.jsonl")]

    greedy = answers("greedy")
    assert answers("greedy2") == greedy
    sampled = answers("sampled", sample=True, temperature=1.0)
    assert len(sampled) == 2 and sampled != greedy
    assert EvalConfig(**cfg, sample=True).run_name().endswith("__sampled")
    with pytest.raises(EvalError, match="needs a sampling policy"):
        run_eval(EvalConfig(**{**cfg, "policy": "baseline", "out": str(dirs["root"] / "e4")}, sample=True))
    with pytest.raises(EvalError, match="different sample"):  # a sampled run cannot continue a greedy one
        run_eval(EvalConfig(**cfg, out=str(dirs["root"] / "greedy"), sample=True, resume=True, limit=3))
