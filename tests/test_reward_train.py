"""Training reward models: the soft-label Bradley-Terry trainer on tiny backbones built from config,
saving and loading, the held-out report, the CLI from a labelling export, and the real MiniLM."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from citeagent.answer import Answer, Quote
from citeagent.reward.model import RewardModel, build_backbone, load_reward_model
from citeagent.reward.report import evaluate_comparisons
from citeagent.reward.schema import Comparison
from citeagent.train.rm import RMConfig, fit
from feedback_support import REPO


def toy(n: int, offset: int = 0, score: float = 1.0) -> list[Comparison]:
    """Questions whose better answer quotes its evidence; half the pairs put it second."""
    out = []
    for i in range(offset, offset + n):
        q = f"Where was person {i} born?"
        good = Answer(q, f"In town {i} [1].", [Quote(1, f"Person {i}", f"https://example.org/{i}", f"Person {i} was born in town {i}.")])
        bad = Answer(q, f"Probably somewhere, maybe {i}.")
        out.append(Comparison(q, good, bad, score) if i % 2 else Comparison(q, bad, good, -score))
    return out


def tiny(max_length: int = 64) -> RewardModel:
    model, tokenizer = build_backbone("tiny", seed=0)
    return RewardModel(model, tokenizer, max_length=max_length)


CFG = dict(backbone="tiny", lr=3e-3, batch_size=16, max_length=64, epochs=2, logging_steps=5, center_rewards=None, threads=1)


def test_tiny_model_learns_saves_and_loads(tmp_path):
    rm = tiny()
    run = fit(rm, toy(160), RMConfig(**CFG))
    assert run["train_pairs"] == 160 and run["train_steps"] == 20
    assert run["log_history"][-1]["loss"] < run["log_history"][0]["loss"]
    held = toy(60, offset=1000)  # questions never trained on
    r = evaluate_comparisons(rm, held, n_boot=200)
    assert r["accuracy"]["mean"] >= 0.9 and r["accuracy"]["ci_low"] <= r["accuracy"]["mean"] <= r["accuracy"]["ci_high"]
    path = rm.save(tmp_path / "rm", {"backbone": "tiny"})
    loaded = load_reward_model(path)
    qs = [c.question for c in held]
    np.testing.assert_allclose(loaded.score_batch(qs, [c.answer_0 for c in held]),
                               rm.score_batch(qs, [c.answer_0 for c in held]), atol=1e-4)
    assert loaded.meta["backbone"] == "tiny" and loaded.max_length == 64
    c = held[0]
    good, bad = (c.answer_0, c.answer_1) if c.score_0 > 0 else (c.answer_1, c.answer_0)
    assert loaded.prefer_prob(c.question, good, bad) > 0.5
    assert loaded.score(c.question, good) == pytest.approx(loaded.score_batch([c.question], [good])[0])


def test_ties_are_soft_labels():
    """Trained on the same pairs marked as ties, the model keeps the two answers' scores together;
    marked as wins, it pulls them apart."""
    margins = {}
    for name, score in (("ties", 0.0), ("wins", 1.0)):
        rm = tiny()
        fit(rm, toy(96, score=score), RMConfig(**CFG))
        held = toy(40, offset=500)
        s = np.asarray(rm.score_batch([c.question for c in held for _ in (0, 1)],
                                      [a for c in held for a in (c.answer_0, c.answer_1)])).reshape(-1, 2)
        good_minus_bad = np.where([c.score_0 > 0 for c in held], s[:, 0] - s[:, 1], s[:, 1] - s[:, 0])
        margins[name] = float(np.mean(np.abs(good_minus_bad)))
    assert margins["ties"] < 0.5 and margins["wins"] > 4 * margins["ties"]


def test_report_metrics_by_hand(tmp_path):
    class Fixed:  # a scorer with known outputs, so the report's arithmetic can be checked exactly
        def __init__(self, scores):
            self.scores = scores

        def score_batch(self, questions, answers, batch_size=32):
            return [self.scores[a.text] for a in answers]

    q = "q?"
    comps = [Comparison(q, Answer(q, "a"), Answer(q, "b"), 1.0),   # right, p = sigmoid(2)
             Comparison(q, Answer(q, "c"), Answer(q, "d"), -1.0),  # wrong, p = sigmoid(1)
             Comparison(q, Answer(q, "e"), Answer(q, "f"), 1.0),   # equal scores: half credit
             Comparison(q, Answer(q, "g"), Answer(q, "h"), 0.0)]   # a tie: not in accuracy
    rm = Fixed({"a": 2, "b": 0, "c": 1, "d": 0, "e": 3, "f": 3, "g": 0.5, "h": 0})
    r = evaluate_comparisons(rm, comps, n_boot=200)
    assert r["n"] == 4 and r["n_decided"] == 3 and r["n_ties"] == 1
    assert r["accuracy"]["mean"] == pytest.approx(0.5)
    sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    expected = -np.mean([np.log(sig(2)), np.log(1 - sig(1)), np.log(0.5), 0.5 * np.log(sig(0.5)) + 0.5 * np.log(1 - sig(0.5))])
    assert r["log_loss"] == pytest.approx(expected)
    assert r["tie_mean_abs_margin"] == pytest.approx(0.5)
    assert sum(b["n"] for b in r["calibration"]["bins"]) == 3
    assert r["scores"]["max"] == 3 and r["scores"]["min"] == 0 and sum(r["scores"]["histogram"]["counts"]) == 8
    assert r["preferred_mean"] == pytest.approx((2 + 0 + 3) / 3)


def test_accuracy_interval_resamples_questions_not_pairs():
    from citeagent.reward.report import cluster_bootstrap

    # 10 questions, each judged 10 times the same way: 100 pairs but only 10 independent outcomes
    values = np.repeat([1.0] * 6 + [0.0] * 4, 10)
    groups = [f"q{i // 10}" for i in range(100)]
    clustered = cluster_bootstrap(values, groups, n_boot=2000)
    naive = cluster_bootstrap(values, [f"p{i}" for i in range(100)], n_boot=2000)
    assert clustered["mean"] == naive["mean"] == 0.6 and clustered["n_questions"] == 10
    assert clustered["ci_high"] - clustered["ci_low"] > 2 * (naive["ci_high"] - naive["ci_low"])


def test_train_rm_cli_on_a_labelling_export(tmp_path):
    """The loop closes: judgements exported by the app train a reward model through the CLI."""
    from citeagent.feedback.auth import create_user
    from citeagent.feedback.db import make_engine
    from citeagent.feedback.export import export_judgements
    from citeagent.feedback.judgements import JudgementForm, record_judgement
    from citeagent.feedback.queue import PairItem, enqueue, next_assignment

    engine = make_engine(f"sqlite:///{tmp_path / 'labels.db'}")
    items = [PairItem(c.question, c.answer_0, c.answer_1, f"toy {k}") for k, c in enumerate(toy(40))]
    enqueue(engine, items)
    user = create_user(engine, "ann", "long enough password", rounds=4)
    side = {"supported": True, "plausible": True, "harmful": False}
    while (a := next_assignment(engine, user.id, shuffle=False)) is not None:
        good_first = "[1]" in items[a.pair_id - 1].a.text
        record_judgement(engine, user, a.id, a.pair_id, a.nonce, JudgementForm(-3 if good_first else 3, side, side, ""), "v")
    export = tmp_path / "export.jsonl"
    assert export_judgements(engine, export) == 40

    out = tmp_path / "rm"
    r = subprocess.run([sys.executable, "-m", "citeagent.cli", "train", "rm", "--data", f"{export},hotpotqa-synth:20",
                        "--backbone", "tiny", "--out", str(out), "--max-steps", "3", "--batch-size", "4",
                        "--max-length", "64", "--n-boot", "100", "--heldout-frac", "0.25", "--threads", "1"],
                       capture_output=True, text=True, cwd=REPO, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert set(report["heldout"]) == {"export", "hotpotqa-synth"}
    for name, res in report["heldout"].items():
        assert res["n"] > 0 and set(res["accuracy"]) == {"mean", "ci_low", "ci_high", "n", "n_questions"}
        assert "ece" in res["calibration"] and "histogram" in res["scores"]
    assert report["sources"]["export"]["train"] + report["sources"]["export"]["heldout"] == 40
    assert report["train_steps"] == 3
    assert (out / "report.md").read_text().count("|") > 10 and (out / "report.png").stat().st_size > 0
    assert load_reward_model(out).meta["data"] == f"{export},hotpotqa-synth:20"

    r = subprocess.run([sys.executable, "-m", "citeagent.cli", "train", "rm", "--data", str(export), "--out", str(out),
                        "--eval-only", "--heldout-frac", "0.25", "--n-boot", "100"],
                       capture_output=True, text=True, cwd=REPO, timeout=600)
    assert r.returncode == 0 and "| export |" in r.stdout, r.stderr[-2000:]


def test_bad_data_stops_the_cli_with_the_row(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": {"full_text": "q"}, "quotes_0": [], "answer_0": "x", "score_0": 1, '
                   '"quotes_1": [], "answer_1": "x", "score_1": -1}\n')
    r = subprocess.run([sys.executable, "-m", "citeagent.cli", "train", "rm", "--data", str(bad), "--backbone", "tiny",
                        "--out", str(tmp_path / "rm")], capture_output=True, text=True, cwd=REPO, timeout=600)
    assert r.returncode == 2 and "line 1: the two answers are identical" in r.stderr
    assert not (tmp_path / "rm").exists()


def test_pairs_about_heldout_questions_stop_training(tmp_path):
    """Answers to a held-out evaluation question (the file's first record) are refused before
    training, with the way out; nothing is written."""
    from citeagent.reward.gold_judge import read_hotpot_records

    record = read_hotpot_records(limit=1)[0]
    samples = tmp_path / "samples.jsonl"
    samples.write_text("".join(json.dumps({"question": record["question"], "text": t}) + "\n"
                               for t in (f"{record['answer']}.", "Nobody knows.")))
    r = subprocess.run([sys.executable, "-m", "citeagent.cli", "train", "rm", "--data", f"hotpotqa-gold:{samples}",
                        "--heldout-frac", "0", "--backbone", "tiny", "--out", str(tmp_path / "rm")],
                       capture_output=True, text=True, cwd=REPO, timeout=600)
    assert r.returncode == 2, r.stderr[-2000:]
    assert "1 of the training comparisons (hotpotqa-gold) are about HotpotQA's held-out evaluation" in r.stderr
    assert "sample answers on training questions" in r.stderr
    assert not (tmp_path / "rm").exists()


def test_any_hf_model_by_path_as_backbone(tmp_path):
    """A causal LM saved on disk (a 2-layer Llama, the policy LM's architecture) gets a scalar head."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from citeenv.search.embedder import minilm_path

    tok = AutoTokenizer.from_pretrained(minilm_path())
    lm = LlamaForCausalLM(LlamaConfig(vocab_size=tok.vocab_size, hidden_size=32, intermediate_size=64,
                                      num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                                      pad_token_id=tok.pad_token_id))
    lm.save_pretrained(tmp_path / "lm")
    tok.save_pretrained(tmp_path / "lm")
    model, tokenizer = build_backbone(str(tmp_path / "lm"))
    assert type(model).__name__ == "LlamaForSequenceClassification" and model.config.num_labels == 1
    rm = RewardModel(model, tokenizer, max_length=64)
    fit(rm, toy(32), RMConfig(**{**CFG, "epochs": 1}))
    s = rm.score_batch(["q?", "q?"], [Answer("q?", "short"), Answer("q?", "a much longer answer [1].")])
    assert all(np.isfinite(s))
    # padding must not change a score: alone or in a batch with a longer answer, the same
    assert rm.score("q?", Answer("q?", "short")) == pytest.approx(s[0], abs=1e-4)


def test_minilm_backbone(tmp_path):
    """The offline default: the real all-MiniLM-L6-v2, a few steps, saved and loaded."""
    torch.manual_seed(0)
    model, tokenizer = build_backbone("minilm")
    rm = RewardModel(model, tokenizer, max_length=64)
    run = fit(rm, toy(24), RMConfig(backbone="minilm", batch_size=8, max_length=64, max_steps=3, lr=5e-5))
    assert run["train_steps"] == 3
    loaded = load_reward_model(rm.save(tmp_path / "minilm"))
    assert type(loaded.model).__name__ == "BertForSequenceClassification"
    q = "Where was person 3 born?"
    assert loaded.score(q, toy(1, offset=3)[0].answer_0) == pytest.approx(rm.score(q, toy(1, offset=3)[0].answer_0), abs=1e-4)


def test_long_dialogues_keep_their_last_turn():
    rm = tiny(max_length=48)
    rm.max_question_tokens = 12
    question = "Human: " + "blah " * 300 + "\n\nHuman: what is the capital of France?"
    ids = rm.encode(question, Answer(question, "Paris."))
    text = rm.tokenizer.decode(ids)
    assert "capital of france" in text and "paris" in text and len(ids) <= 48


def test_head_gets_its_own_learning_rate(tmp_path):
    from datasets import Dataset

    from citeagent.train.rm import CiteRewardTrainer, pair_rows, reward_config

    rm = tiny()
    cfg = RMConfig(**{**CFG, "lr": 1e-4, "head_lr": 1e-2})
    trainer = CiteRewardTrainer(model=rm.model, args=reward_config(cfg, str(tmp_path)), processing_class=rm.tokenizer,
                                train_dataset=Dataset.from_list(pair_rows(rm.encode, toy(8), "webgpt")), head_lr=cfg.head_lr)
    opt = trainer.create_optimizer()
    by_lr = {}
    for group in opt.param_groups:
        for p in group["params"]:
            by_lr.setdefault(group["lr"], set()).add(id(p))
    names = {id(p): n for n, p in rm.model.named_parameters()}
    assert {names[i] for i in by_lr[1e-2]} == {"classifier.weight", "classifier.bias", "bert.pooler.dense.weight",
                                               "bert.pooler.dense.bias"}
    assert len(by_lr[1e-4]) == len(names) - 4


def test_bench_script_runs_every_variant_on_the_same_pairs(tmp_path):
    out = tmp_path / "bench.json"
    r = subprocess.run([sys.executable, "scripts/bench_rm.py", "--backbone", "tiny", "--data", "hotpotqa-synth:10",
                        "--pairs", "16", "--max-length", "64", "--threads", "1", "--out", str(out)],
                       capture_output=True, text=True, cwd=REPO, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    bench = json.loads(out.read_text())
    assert bench["pairs"] == 16 and set(bench["results"]) == {"trl_plain", "trl_plain_fp32", "citeagent"}
    assert all(v["pairs_per_second"] > 0 for v in bench["results"].values())
    assert bench["speedup_vs_trl_plain"] == pytest.approx(bench["results"]["trl_plain"]["seconds"]
                                                          / bench["results"]["citeagent"]["seconds"])


def test_exclude_questions_drops_their_pairs_from_every_source(tmp_path):
    """--exclude-questions: the pairs about a data set's questions never reach training or the
    report, counted per source; a file that is not a data set stops the run before anything is written."""
    from citeagent.eval.datasets import hotpotqa_split
    from citeagent.reward.gold_judge import read_hotpot_records

    train = hotpotqa_split(read_hotpot_records())[0]
    excluded = tmp_path / "test.jsonl"
    excluded.write_text("".join(json.dumps({"question": r["question"].lower() + " ", "answer": r["answer"]}) + "\n"
                                for r in train[3:6]))
    out = tmp_path / "rm"
    base = [sys.executable, "-m", "citeagent.cli", "train", "rm", "--data", "hotpotqa-synth:20", "--backbone", "tiny",
            "--out", str(out), "--max-steps", "1", "--batch-size", "4", "--max-length", "64", "--n-boot", "50",
            "--heldout-frac", "0.25", "--threads", "1"]
    r = subprocess.run(base + ["--exclude-questions", str(excluded)], capture_output=True, text=True, cwd=REPO, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    synth = json.loads((out / "report.json").read_text())["sources"]["hotpotqa-synth"]
    assert synth["rows"] == 40 and synth["dropped"] == {"about an excluded question": 6}
    assert synth["kept"] == 34 == synth["train"] + synth["heldout"]

    r = subprocess.run(base[:-2] + ["--out", str(tmp_path / "rm2"), "--threads", "1", "--exclude-questions",
                                    str(tmp_path / "missing.jsonl")], capture_output=True, text=True, cwd=REPO, timeout=600)
    assert r.returncode == 2 and "--exclude-questions: No data set file at" in r.stderr, r.stderr[-2000:]
    assert not (tmp_path / "rm2").exists()
