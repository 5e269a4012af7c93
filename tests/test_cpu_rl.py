"""RL for the CPU candidate policy: the PPO quantities for this policy against values computed by
hand, masking of invalid candidates in the loss, the reward model's pairs, and exact resume of a
killed PPO run. Tiny components: a hashed bag-of-words encoder stands in for MiniLM."""
import copy
import json
import math
import types

import numpy as np
import pytest
import torch

from citeagent.answer import Answer, Quote
from citeagent.policies.candidate import (N_ANSWER_FEATURES, N_FEATURES, CandidatePolicy, CandidatePolicyConfig,
                                          Decision, Scorer)
from citeagent.train.cpu_ppo import CpuPPOConfig, evaluate, to_rows, train
from citeagent.train.ppo_math import gae, kl_penalty_rewards
from citeenv.corpus import Corpus
from citeenv.documents import Document
from citeenv.index import in_memory_index
from citeenv.local import LocalBackend
from tests.test_cpu_policy import WordEncoder
from tests.test_cpu_policy import scorer_preferring as scorer_on


def test_evaluate_gives_the_log_prob_of_the_chosen_candidate_by_hand():
    s = scorer_on(0)
    f = np.zeros((3, N_FEATURES), np.float32)
    f[:, 0] = [1.0, 2.0, 0.0]
    a = np.zeros((2, N_ANSWER_FEATURES), np.float32)
    a[:, 0] = [0.5, -0.5]
    steps = [Decision("x", 1, 0.0, f), Decision("y", 0, 0.0, a, phase="answer")]
    logp, ent, _ = evaluate(s, steps, 1.0)
    z = math.log(math.e + math.e ** 2 + 1)
    assert logp[0].item() == pytest.approx(2 - z, abs=1e-5)
    # the answer head's hidden ReLU passes 0.5 and stops -0.5: scores 0.5 and 0
    assert logp[1].item() == pytest.approx(0.5 - math.log(math.exp(0.5) + 1), abs=1e-5)
    p = np.exp(np.array([1, 2, 0]) - z)
    assert ent[0].item() == pytest.approx(float(-(p * np.log(p)).sum()), abs=1e-5)


def test_padding_never_enters_the_loss():
    """A state with 2 candidates batched with one of 4: the padded slots hold garbage, and neither
    the log-prob nor its gradient changes."""
    s = scorer_on(0)
    small = np.zeros((2, N_FEATURES), np.float32)
    small[:, 0] = [0.3, 0.7]
    big = np.random.default_rng(0).normal(size=(4, N_FEATURES)).astype(np.float32)
    alone, _, _ = evaluate(s, [Decision("a", 1, 0.0, small)], 1.0)
    both, _, _ = evaluate(s, [Decision("a", 1, 0.0, small), Decision("b", 3, 0.0, big)], 1.0)
    assert both[0].item() == pytest.approx(alone[0].item(), abs=1e-6)
    assert alone[0].item() == pytest.approx(0.7 - math.log(math.exp(0.3) + math.exp(0.7)), abs=1e-5)
    s.zero_grad()
    both[0].backward()
    g_both = s.net[0].weight.grad.clone()
    s.zero_grad()
    evaluate(s, [Decision("a", 1, 0.0, small)], 1.0)[0][0].backward()
    assert torch.allclose(g_both, s.net[0].weight.grad)


def test_episode_rows_kl_rewards_and_advantages_by_hand():
    eps = [types.SimpleNamespace(decisions=[0, 0, 0]), types.SimpleNamespace(decisions=[0])]
    logp, mask = to_rows(eps, torch.tensor([-1.0, -0.5, -0.2, -0.3]))
    ref, _ = to_rows(eps, torch.tensor([-1.5, -0.5, -0.1, -0.3]))
    assert mask.tolist() == [[True, True, True], [True, False, False]]
    rewards, kl = kl_penalty_rewards(logp, ref, mask, torch.tensor([1.0, 0.0]), kl_coef=0.1)
    assert kl[0].tolist() == pytest.approx([0.5, 0.0, -0.1])
    assert rewards[0].tolist() == pytest.approx([-0.05, 0.0, 0.01 + 1.0])
    values = torch.tensor([[0.5, 0.6, 0.7], [0.2, 0.0, 0.0]])
    adv, ret = gae(rewards, values, mask, gamma=1.0, lam=1.0)
    # lam = gamma = 1: the advantage is the rest of the episode's reward minus the value
    assert adv[0].tolist() == pytest.approx([-0.05 + 1.01 - 0.5, 1.01 - 0.6, 1.01 - 0.7], abs=1e-6)
    assert adv[1, 0].item() == pytest.approx(0.0 - 0.2) and adv[1, 1:].abs().sum() == 0


DOCS = [("Alpha", "Alpha is a city in Norway. It has a harbour."), ("Beta", "Beta is a river in Spain. It is long."),
        ("Gamma", "Gamma is a mountain in Chile. It is high.")]


def tiny_setup():
    docs = [Document(t, t, f"https://example.org/{t}", text) for t, text in DOCS]
    corpus = Corpus(docs, name="tiny")
    backend = LocalBackend(corpus, in_memory_index(corpus))
    questions = [{"id": t, "question": f"Where is {t}?", "answers": [text.split(" in ")[1].split(".")[0]],
                  "support": [{"title": t, "url": f"https://example.org/{t}", "text": text.split(". ")[0] + "."}]}
                 for t, text in DOCS]
    torch.manual_seed(0)
    policy = CandidatePolicy(Scorer(16), WordEncoder(), CandidatePolicyConfig(temperature=1.0))
    return policy, questions, {"tiny": (questions, lambda i: backend)}


def test_ppo_resumes_exactly_after_a_kill(tmp_path):
    cfg = dict(episodes=8, episodes_per_iter=4, minibatch_episodes=2, update_epochs=2, max_actions=6, seed=3,
               dev_questions=1, dev_every=1)
    policy, questions, backends = tiny_setup()
    straight_summary = train(CpuPPOConfig(out=str(tmp_path / "straight"), **cfg), policy, backends)
    straight = policy.scorer.state_dict()

    policy, questions, backends = tiny_setup()
    train(CpuPPOConfig(out=str(tmp_path / "killed"), **(cfg | {"episodes": 4})), policy, backends)  # "killed" after 1
    policy, questions, backends = tiny_setup()  # a new process: the BC weights again, then the checkpoint
    summary = train(CpuPPOConfig(out=str(tmp_path / "killed"), **cfg), policy, backends)
    for k, v in straight.items():
        assert torch.equal(v, policy.scorer.state_dict()[k]), k
    rows = [json.loads(x) for x in (tmp_path / "killed" / "log.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows] == [1, 2]  # nothing lost, nothing run twice
    straight_rows = [json.loads(x) for x in (tmp_path / "straight" / "log.jsonl").read_text().splitlines()]
    assert [(r["gold"], r["dev"]) for r in rows] == [(r["gold"], r["dev"]) for r in straight_rows]
    # each row records memory: this process's peak so far, and the texts whose vectors it keeps
    from citeagent.train.common import peak_rss_mb

    assert 0 < straight_rows[0]["peak_rss_mb"] <= straight_rows[1]["peak_rss_mb"] <= peak_rss_mb()
    assert all(r["embedded_texts"] > 0 for r in rows)
    assert summary["best"]["iteration"] == straight_summary["best"]["iteration"]  # the best so far survives a kill
    assert summary["best"]["dev"] == straight_summary["best"]["dev"]


def test_ppo_keeps_its_dev_questions_out_of_the_draws_and_saves_the_best_iterate(tmp_path):
    from citeagent.train.cpu_rollout import collect_episodes

    cfg = dict(episodes=12, episodes_per_iter=4, minibatch_episodes=2, update_epochs=2, max_actions=6, seed=3,
               dev_questions=1, dev_every=2)
    policy, questions, pools = tiny_setup()
    backend = pools["tiny"][1](0)
    asked = []  # (question index, answered greedily?) of every episode started

    def backend_for(i):
        asked.append((i, policy.config.temperature == 0))
        return backend

    bc = CandidatePolicy(copy.deepcopy(policy.scorer), WordEncoder(), CandidatePolicyConfig())  # greedy
    bc_dev = collect_episodes(bc, questions[2:], lambda k: backend, 6, seed=0, keep_decisions=False)
    summary = train(CpuPPOConfig(out=str(tmp_path / "run"), **cfg), policy, {"tiny": (questions, backend_for)})
    assert {i for i, greedy in asked if not greedy} == {0, 1}  # PPO never drew the dev question
    assert {i for i, greedy in asked if greedy} == {2}
    rows = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    dev = {r["iteration"]: r["dev"]["score"] for r in rows if "dev" in r}
    assert sorted(dev) == [2, 3]  # every 2nd iteration, and the last
    dev[0] = bc_dev[0].gold["score"]  # the BC policy's, computed here by hand
    best = summary["best"]
    assert best["dev"]["score"] == pytest.approx(max(dev.values()))
    assert best["iteration"] == min(k for k, v in dev.items() if v == max(dev.values()))  # the first best one
    assert CandidatePolicy.load(tmp_path / "run" / "best", encoder=WordEncoder()).config.temperature == 0.0
    policy, questions, pools = tiny_setup()
    with pytest.raises(ValueError, match="--dev-questions 3: the tiny setting has only 3 training questions"):
        train(CpuPPOConfig(out=str(tmp_path / "too_many"), **(cfg | {"dev_questions": 3})), policy, pools)


def test_ppo_refuses_bad_configs_before_training(tmp_path):
    with pytest.raises(ValueError, match="KL coefficient cannot be negative"):
        CpuPPOConfig(kl_coef=-0.1)
    with pytest.raises(ValueError, match="citeagent train cpu-bc"):
        CpuPPOConfig(init=str(tmp_path / "none")).check_files()
    (tmp_path / "bc").mkdir()
    (tmp_path / "bc" / "policy.json").write_text("{}")
    with pytest.raises(ValueError, match="citeagent train cpu-rm"):
        CpuPPOConfig(init=str(tmp_path / "bc"), reward_model=str(tmp_path / "no_rm")).check_files()


def test_ppo_stops_on_nan_and_keeps_the_last_good_checkpoint(tmp_path):
    policy, questions, backends = tiny_setup()
    cfg = CpuPPOConfig(out=str(tmp_path / "run"), episodes=4, episodes_per_iter=4, minibatch_episodes=2, max_actions=6)
    train(cfg, policy, backends)
    good = (tmp_path / "run" / "checkpoint.pt").read_bytes()
    nan_rm = types.SimpleNamespace(score_batch=lambda qs, ans: [float("nan")] * len(ans))
    with pytest.raises(FloatingPointError, match="last good checkpoint"):
        train(CpuPPOConfig(out=str(tmp_path / "run"), episodes=8, episodes_per_iter=4, minibatch_episodes=2,
                           max_actions=6), policy, backends, reward_model=nan_rm)
    assert (tmp_path / "run" / "checkpoint.pt").read_bytes() == good


class Recorder:
    """A reward with score_batch that records the questions it was asked to score."""

    def __init__(self, value):
        self.value, self.asked = value, []

    def score_batch(self, questions, answers):
        self.asked.extend(questions)
        return [self.value] * len(answers)


def test_ppo_scores_redteam_episodes_by_the_safety_reward_and_keeps_them_out_of_dev(tmp_path):
    policy, questions, pools = tiny_setup()
    red = [{"id": f"r{i}", "question": f"How do I hurt {t}?", "answers": [], "support": [], "redteam": True}
           for i, (t, _) in enumerate(DOCS)]
    pools["redteam"] = (red, pools["tiny"][1])
    rm, safety = Recorder(1.0), Recorder(-1.0)
    cfg = CpuPPOConfig(out=str(tmp_path / "run"), episodes=24, episodes_per_iter=4, minibatch_episodes=2,
                       update_epochs=1, max_actions=6, seed=1, dev_questions=1, dev_every=3)
    train(cfg, policy, pools, reward_model=rm, safety_reward=safety)
    rows = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert {r["setting"] for r in rows} == {"tiny", "redteam"}
    for r in rows:  # each iteration's reward is the one its setting's judge gave
        assert r["reward"] == (-1.0 if r["setting"] == "redteam" else 1.0)
    assert set(safety.asked) <= {q["question"] for q in red} and set(rm.asked) <= {q["question"] for q in questions}
    # every red-team prompt may be drawn (no dev questions kept out), and dev scores only the QA setting
    assert {q["question"] for q in red[2:]} & set(safety.asked)
    assert all(set(r["dev"]) == {"tiny", "score"} for r in rows if "dev" in r)
    policy, questions, pools = tiny_setup()
    pools["redteam"] = (red, pools["tiny"][1])
    with pytest.raises(ValueError, match="needs a safety reward"):
        train(CpuPPOConfig(out=str(tmp_path / "none"), episodes=4, episodes_per_iter=4), policy, pools, reward_model=rm)


def test_ppo_refuses_a_bad_safety_reward_and_redteam_is_for_ppo_only():
    with pytest.raises(ValueError, match="--safety-reward: name only harmless and rule"):
        CpuPPOConfig(safety_reward="support=1,harmless=1")
    with pytest.raises(ValueError, match="--safety-reward: give harmless or rule a weight above 0"):
        CpuPPOConfig(safety_reward="harmless=0,rule=0")
    with pytest.raises(ValueError, match="--safety-reward: 'lots' is not NAME=WEIGHT"):
        CpuPPOConfig(safety_reward="lots")
    w = CpuPPOConfig(settings="distractor,redteam", safety_reward="rule=3").safety_weights()
    assert (w.support_weight, w.harmless_weight, w.rule_weight) == (0.0, 1.0, 3.0)
    from citeagent.train.cpu_bc import rl_settings
    from citeagent.train.pipeline import PipelineConfig

    with pytest.raises(ValueError, match="redteam is for PPO only"):
        rl_settings("distractor,redteam")
    assert rl_settings("distractor,redteam", redteam=True) == ["distractor", "redteam"]
    with pytest.raises(ValueError, match="--ppo-settings 'redteam,web'"):
        PipelineConfig(ppo_settings="redteam,web")
    with pytest.raises(ValueError, match="redteam is for PPO only"):
        PipelineConfig(settings="distractor,redteam")


def test_redteam_training_prompts_never_include_an_evaluation_question():
    from citeagent.eval.datasets import load_redteam, question_key, redteam_training_questions
    from citeagent.train.cpu_rollout import gold_judgement

    train_q = redteam_training_questions()
    held = load_redteam().examples
    assert len(train_q) > 1000 and len(held) > 300  # harmless-base: the PM's 80% and 20% sides
    assert not {question_key(q["question"]) for q in train_q} & {question_key(e.question) for e in held}
    assert not {q["id"] for q in train_q} & {e.id for e in held}
    assert len({question_key(q["question"]) for q in train_q}) == len(train_q)
    judged = gold_judgement(train_q[0], Answer(train_q[0]["question"], "anything [1]",
                                               [Quote(1, "T", "https://example.org/T", "anything")]))
    assert judged == {"answer_f1": 0.0, "correct": 0.0, "sp_recall": 0.0, "score": 0.0}


def test_comparisons_pair_untied_samples_and_round_trip(tmp_path):
    from citeagent.train.cpu_rm import comparisons_from_episodes, read_comparisons, write_comparisons

    q = {"id": "q1", "question": "Where is Alpha?"}

    def ep(text, score):
        a = Answer("Where is Alpha?", f"{text} [1]", [Quote(1, "Alpha", "https://example.org/Alpha", "Alpha is a city in Norway.")])
        return types.SimpleNamespace(question=q, answer=a, gold={"score": score})

    comps = comparisons_from_episodes([ep("Norway", 1.0), ep("Spain", 0.5), ep("Chile", 0.5)], n=3)
    assert [(c.answer_0.text, c.answer_1.text, c.score_0) for c in comps] == [
        ("Norway [1]", "Spain [1]", 0.5), ("Norway [1]", "Chile [1]", 0.5)]  # the tie is not a pair
    write_comparisons(comps, tmp_path / "c.jsonl")
    back = read_comparisons(tmp_path / "c.jsonl")
    assert [(c.answer_0.text, c.score_0, c.group) for c in back] == [("Norway [1]", 0.5, "q1"), ("Norway [1]", 0.5, "q1")]
    (tmp_path / "bad.jsonl").write_text('{"question": "x"}\n')
    with pytest.raises(Exception, match="bad.jsonl, line 1"):
        read_comparisons(tmp_path / "bad.jsonl")


def test_rl_question_pools_refuse_unknown_settings_and_pydocs_without_questions(tmp_path):
    from citeagent.train.cpu_bc import question_pools

    with pytest.raises(ValueError, match="--settings 'web'.*distractor, pooled and/or pydocs"):
        question_pools("web")
    with pytest.raises(ValueError, match="--settings pydocs needs --pydocs-questions"):
        question_pools("pydocs", pydocs_questions=str(tmp_path / "none.jsonl"))


def test_rl_after_fewer_demonstrations_draws_only_questions_bc_never_saw(tmp_path):
    from citeagent.train.cpu_bc import CpuBCConfig, _pydocs_group, hotpot_training_questions, question_pools
    from citeagent.train.pipeline import PipelineConfig, run

    assert run(PipelineConfig(out=str(tmp_path), stages="questions")) == 0
    generated = str(tmp_path / "pydocs_questions.jsonl")
    bc = CpuBCConfig(hotpot_limit=100, pydocs_questions=generated, pydocs_limit=50)  # BC's questions
    seen = {q["id"] for q in hotpot_training_questions(bc.hotpot_limit)} | {q["id"] for q in _pydocs_group(bc)[0]}
    pools = question_pools("distractor,pydocs", pydocs_questions=generated, pydocs_limit=50, hotpot_from=100,
                           pydocs_from=50)
    drawn = {s: [q["id"] for q in qs] for s, (qs, _) in pools.items()}
    assert len(drawn["distractor"]) == len(hotpot_training_questions()) - 100 and len(drawn["pydocs"]) == 50
    assert not seen & (set(drawn["distractor"]) | set(drawn["pydocs"]))
    assert set(drawn["distractor"]) | {q["id"] for q in hotpot_training_questions(100)} == \
        {q["id"] for q in hotpot_training_questions()}
    with pytest.raises(ValueError, match="--hotpot-from 100000: no HotpotQA training questions"):
        question_pools("distractor", hotpot_from=100_000)
    with pytest.raises(ValueError, match="--demo-questions -1"):
        PipelineConfig(demo_questions=-1)
    with pytest.raises(ValueError, match="--demo-questions 5000: there are 620 HotpotQA training questions"):
        PipelineConfig(demo_questions=5000)
    with pytest.raises(ValueError, match="--demo-questions with --ppo-seed 2"):
        PipelineConfig(demo_questions=100, ppo_seed=2)


def test_the_pipeline_refuses_an_unknown_setting_before_any_stage():
    from citeagent.train.pipeline import PipelineConfig

    with pytest.raises(ValueError, match="--settings 'distractor,web'"):
        PipelineConfig(settings="distractor,web")
    with pytest.raises(ValueError, match="--ppo-kl-coef -0.1: the KL coefficient cannot be negative"):
        PipelineConfig(ppo_kl_coef=-0.1)
    assert PipelineConfig().settings == "distractor,pydocs"


def test_rejection_sampling_keeps_each_groups_best_answered_episode_by_hand():
    from citeagent.answer import Answer
    from citeagent.train.cpu_rollout import Episode
    from citeagent.train.cpu_rs import best_of_groups

    def ep(score, declined=False, truncated=False):
        answer = Answer.from_dict({"question": "q", "text": "" if declined else "a [1]", "declined": declined,
                                   "quotes": []})
        return Episode({"question": "q"}, answer=answer, truncated=truncated, gold={"score": score})

    eps = [ep(0.2), ep(0.9, declined=True), ep(0.5), ep(0.7, truncated=True),  # group 1: 0.5 wins
           ep(0.1, declined=True), ep(0.3, truncated=True), ep(0.8, declined=True), ep(0.9, declined=True)]  # none
    assert [e.gold["score"] for e in best_of_groups(eps, 4)] == [0.5]

    class Reversed:  # a reward model that prefers low gold scores
        def score_batch(self, questions, answers):
            return [-e.gold["score"] for e in eps]

    assert [e.gold["score"] for e in best_of_groups(eps, 4, Reversed())] == [0.2]


def test_the_gold_judge_scores_a_pydocs_answer_by_correct_and_its_support_by_hand():
    from citeagent.train.cpu_rollout import gold_judgement

    question = {"question": "What does str.split() return?", "answers": ["a list of the words"],
                "support": [{"text": "Return a list of the words in the string.", "url": "u", "title": "t"},
                            {"text": "If maxsplit is given, at most maxsplit splits are done.", "url": "u", "title": "t"}]}
    quote = Quote(1, "t", "u", "Return a list of the words in the string.")
    sentence = Answer("q", "Return a list of the words in the string. [1]", [quote])
    g = gold_judgement(question, sentence)
    assert g["correct"] == 1.0 and g["sp_recall"] == 0.5  # one of the two gold sentences quoted
    assert g["score"] == 0.5 * 1.0 + 0.5 * 0.5  # ANSWER_WEIGHT 0.5 on "correct", the rest on recall
    assert 0 < g["answer_f1"] < 1  # F1 is kept for the record, not scored
    wrong = gold_judgement(question, Answer("q", "the string [1]", [quote]))
    assert wrong["correct"] == 0.0 and wrong["score"] == 0.25


def test_episodes_are_written_in_the_settings_answer_form_and_the_policys_own_is_kept():
    from citeagent.train.cpu_bc import setting_answer_form
    from citeagent.train.cpu_rollout import collect_episodes

    assert setting_answer_form("pydocs") == "sentence" and setting_answer_form("distractor") == "span"
    assert setting_answer_form("pooled") == "span" and setting_answer_form("tiny") is None
    policy, questions, pools = tiny_setup()
    policy.config.temperature = 0.0
    state = {"phase": "answer", "question": "Where is Beta?",
             "quotes": [{"n": 1, "text": "Beta is a river in Spain. It is long."}]}
    span = policy.act_batch([""], [state])[0]
    policy.config.answer_form = "sentence"
    sentence = policy.act_batch([""], [state])[0]
    assert span.endswith(" [1]") and span[:-4] in sentence
    assert sentence in ("Beta is a river in Spain. [1]", "It is long. [1]")  # a whole sentence of the quote
    policy.config.answer_form = "span"
    collect_episodes(policy, questions, pools["tiny"][1], max_actions=6, seed=1, answer_form="sentence")
    assert policy.config.answer_form == "span"  # the policy's own form is back


def test_the_pipelines_questions_stage_writes_the_generated_pydocs_questions(tmp_path):
    from citeagent.data.gold_questions import load_gold_questions
    from citeagent.train.pipeline import PipelineConfig, run

    assert run(PipelineConfig(out=str(tmp_path), stages="questions")) == 0
    questions = load_gold_questions(tmp_path / "pydocs_questions.jsonl")
    assert len(questions) > 1000 and all(q["answers"] and q["support"] for q in questions)
    assert "questions" in json.loads((tmp_path / "stages.json").read_text())


def test_the_pipeline_runs_each_stage_in_its_own_process_and_stops_at_a_failing_one(tmp_path, capfd):
    from citeagent.train.pipeline import PipelineConfig, run, stage_command

    cfg = PipelineConfig(out=str(tmp_path), stages="questions,rm")
    command = stage_command(cfg, "rm")
    assert command[-2:] == ["--stages", "rm"] and "--ppo-episodes" in command and "--ship" not in command
    # rm needs the comparisons stage's file, which this run does not make: its child fails
    assert run(cfg) == 2
    err = capfd.readouterr().err
    assert "[rm] stopped (exit code 2)" in err and "comparisons.jsonl" in err
    assert list(json.loads((tmp_path / "stages.json").read_text())) == ["questions"]  # kept
    assert (tmp_path / "pydocs_questions.jsonl").is_file()


def test_the_reward_models_validation_accuracy_by_what_a_pair_is_about():
    from citeagent.reward.schema import Comparison
    from citeagent.train.cpu_rm import accuracy_by_kind, pair_kinds

    q = "What is x?"
    a, b = Answer(q, "One. [1]"), Answer(q, "Two. [1]")

    def pair(group, g0, g1, score):
        return Comparison(q, a, b, score, group=group, meta={"gold_0": g0, "gold_1": g1})

    hot_answer = pair("5ab2", {"answer_f1": 1.0, "sp_recall": 0.5}, {"answer_f1": 0.0, "sp_recall": 0.5}, 0.5)
    hot_support = pair("5ab3", {"answer_f1": 0.2, "sp_recall": 1.0}, {"answer_f1": 0.2, "sp_recall": 0.0}, -0.4)
    # a pydocs pair: "correct" decides, although answer_f1 differs
    py_support = pair("pydocs-gen-1", {"answer_f1": 0.3, "correct": 1.0, "sp_recall": 1.0},
                      {"answer_f1": 0.0, "correct": 1.0, "sp_recall": 0.0}, 0.5)
    people = Comparison(q, a, b, 1.0, group="web")
    tie = pair("5ab4", {"answer_f1": 0.5}, {"answer_f1": 0.5}, 0.0)
    assert pair_kinds(hot_answer) == ["hotpotqa", "hotpotqa, answer"]
    assert pair_kinds(hot_support) == ["hotpotqa", "hotpotqa, support only"]
    assert pair_kinds(py_support) == ["pydocs", "pydocs, support only"]
    assert pair_kinds(people) == ["unjudged"]
    # margins: right, wrong (answer_1 is better but scored lower), right, wrong; the tie is left out
    got = accuracy_by_kind([hot_answer, hot_support, py_support, people, tie], [0.3, 0.2, 1.0, -0.1, 5.0])
    assert got == {"hotpotqa": {"pairs": 2, "accuracy": 0.5}, "hotpotqa, answer": {"pairs": 1, "accuracy": 1.0},
                   "hotpotqa, support only": {"pairs": 1, "accuracy": 0.0}, "pydocs": {"pairs": 1, "accuracy": 1.0},
                   "pydocs, support only": {"pairs": 1, "accuracy": 1.0}, "unjudged": {"pairs": 1, "accuracy": 0.0}}


class _ListedReader:
    """A reader whose reading is given: the thing under test is what the RM makes of it."""

    def __init__(self, candidates):
        self.candidates = candidates
        self.calls = 0

    def candidates_batch(self, episodes, k=8):
        self.calls += 1
        return [list(self.candidates) if any(x["text"] for x in quotes) else [] for _, quotes in episodes]


def test_the_reward_models_reader_inputs_against_values_computed_by_hand(tmp_path, monkeypatch):
    from citeagent.policies import candidate
    from citeagent.policies.reader import AnswerCandidate
    from citeagent.train.cpu_rm import (N_RM_FEATURES, AnswerRewardModel, CpuRMConfig, RewardHead, n_features,
                                        reader_features, rm_features)
    from tests.test_cpu_policy import WordEncoder

    q = "What is the capital of France?"
    quote = [Quote(1, "France", "u", "Paris is the capital of France.")]
    reading = _ListedReader([AnswerCandidate("Paris", math.log(0.6), [1], "span"),
                             AnswerCandidate("the capital", math.log(0.3), [1], "span")])
    monkeypatch.setitem(candidate._READERS, "listed-reader", reading)
    answers = [Answer(q, "Paris [1]", quote),                            # the reader's best answer itself
               Answer(q, "Paris is the capital of France. [1]", quote),  # a sentence holding it
               Answer(q, "Lyon [1]", quote),                             # not among the reader's answers
               Answer(q, "", quote, declined=True),
               Answer(q, "Paris", [])]                                   # no quotes: nothing read
    got = reader_features("listed-reader", [q] * len(answers), answers)
    np.testing.assert_allclose(got, [[0.6, 0.6, 0.6], [0.0, 0.6, 0.6], [0.0, 0.0, 0.6], [0, 0, 0], [0, 0, 0]],
                               rtol=1e-6)
    # the same quotes are read once in a process (the policy's answer phase has usually read them)
    calls = reading.calls
    reader_features("listed-reader", [q], answers[:1])
    assert reading.calls == calls

    # saved with the model: a loaded model has the wider head and scores with the reader's inputs
    assert n_features("") == N_RM_FEATURES and n_features("listed-reader") == N_RM_FEATURES + 3
    torch.manual_seed(0)
    AnswerRewardModel(RewardHead(8, n_features("listed-reader")), WordEncoder(), {"reader": "listed-reader"}).save(tmp_path)
    rm = AnswerRewardModel.load(tmp_path, encoder=WordEncoder())
    assert rm.head.net[0].in_features == N_RM_FEATURES + 3
    x = rm_features(WordEncoder(), [q], answers[:1], "listed-reader")
    assert x.shape == (1, N_RM_FEATURES + 3)
    np.testing.assert_allclose(x[0, -3:], [0.6, 0.6, 0.6], rtol=1e-6)
    assert rm.score(q, answers[0]) == pytest.approx(float(rm.head(torch.from_numpy(x)).detach()[0]), abs=1e-6)
    with pytest.raises(ValueError, match="--reader 'nowhere'"):
        CpuRMConfig(reader="nowhere")
    from citeagent.train.pipeline import PipelineConfig

    with pytest.raises(ValueError, match="--rm-reader 'nowhere'"):  # before any stage runs
        PipelineConfig(out=str(tmp_path / "p"), rm_reader="nowhere")


def test_rl_reads_with_the_reader_it_is_given_and_refuses_one_that_is_not_there(tmp_path):
    from citeagent.policies.reader import CROSSFIT_FILE
    from citeagent.train.cpu_ppo import CpuPPOConfig
    from citeagent.train.cpu_rm import check_reader
    from citeagent.train.cpu_rs import CpuRSConfig
    from citeagent.train.pipeline import PipelineConfig

    with pytest.raises(ValueError, match="--reader 'nowhere'"):
        CpuPPOConfig(reader="nowhere")
    with pytest.raises(ValueError, match="--reader 'nowhere'"):
        CpuRSConfig(reader="nowhere")
    with pytest.raises(ValueError, match="--rl-reader 'nowhere'.*--folds K"):  # before any stage runs
        PipelineConfig(out=str(tmp_path / "p"), rl_reader="nowhere")
    (tmp_path / "cf").mkdir()
    (tmp_path / "cf" / CROSSFIT_FILE).write_text("{}")
    check_reader(str(tmp_path / "cf"), "--rl-reader")  # a cross-fitted reader's directory is one
