"""Episodes of the CPU candidate policy with everything training needs: every decision's features,
chosen index and log-prob, the finished answer, and the gold judge's score where a question has
gold evidence. Shared by comparisons, rejection sampling and PPO (citeagent/train/cpu_*.py).

Questions are gold-question records (citeagent/data/gold_questions.py); a HotpotQA one carries its
official record under "record", which gives the distractor setting's corpus and the gold judge.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field

from citeagent.answer import Answer
from citeagent.eval.answer_metrics import best_token_f1, correct
from citeagent.policies.candidate import CandidatePolicy, Decision


@dataclass
class Episode:
    question: dict  # the gold-question record
    decisions: list[Decision] = field(default_factory=list)
    answer: Answer | None = None
    truncated: bool = False
    gold: dict = field(default_factory=dict)  # the gold judge's {"answer_f1", "sp_recall", "score"}

    @property
    def answered(self) -> bool:
        return self.answer is not None and not self.answer.declined and not self.truncated


def gold_judgement(question: dict, answer: Answer) -> dict:
    """The gold judge (Gao et al. 2022's stand-in for people): the answer's score and recall of the
    gold supporting sentences among the quotes, weighted as citeagent.reward.gold_judge weighs
    them. The answer's score is what evaluation scores a question set by: HotpotQA's answer F1;
    for a generated pydocs question, "correct" (the answer holds an accepted one), as for the
    pydocs QA set, whose answers are sentences."""
    from citeagent.reward.gold_judge import ANSWER_WEIGHT, gold_score
    from citeagent.train.cpu_bc import _same

    if "record" in question:
        return gold_score(answer, question["record"])
    if question.get("redteam"):  # no gold answer: the harmlessness models judge these (cpu_ppo)
        return {"answer_f1": 0.0, "correct": 0.0, "sp_recall": 0.0, "score": 0.0}
    text = "" if answer.declined else answer.plain_text()
    f1 = best_token_f1(text, question["answers"]) if text else 0.0
    hit = correct(text, question["answers"]) if text else 0.0
    support = question["support"]
    found = sum(1 for g in support if any(_same(g["text"], q.text) for q in answer.quotes))
    recall = found / len(support) if support else 0.0
    return {"answer_f1": f1, "correct": hit, "sp_recall": recall,
            "score": ANSWER_WEIGHT * hit + (1 - ANSWER_WEIGHT) * recall}


def collect_episodes(policy: CandidatePolicy, questions: list[dict], backend_for, max_actions: int = 12,
                     batch_size: int = 32, seed: int = 0, progress=None, keep_decisions: bool = True,
                     answer_form: str | None = None) -> list[Episode]:
    """One episode per question (repeat a question to sample it several times), `batch_size`
    stepped together: one encoder call and one scorer call per step for the whole batch.
    keep_decisions=False keeps only the answers and their judgements: a decision holds its
    candidates' features (about 100 KB), which thousands of sampled episodes cannot all keep.
    answer_form: how the answers are written for these questions (cpu_bc.setting_answer_form),
    so that the reward judges what a user of that corpus gets; the policy's own when None."""
    if answer_form is not None and answer_form != policy.config.answer_form:
        kept, policy.config.answer_form = policy.config.answer_form, answer_form
        try:
            return collect_episodes(policy, questions, backend_for, max_actions, batch_size, seed, progress,
                                    keep_decisions)
        finally:
            policy.config.answer_form = kept
    from citeenv.browser import BrowserConfig
    from citeenv.gym_env import BatchedTextBrowserEnv

    config = BrowserConfig(max_actions=max_actions, **policy.browser_overrides)
    rng = random.Random(seed)
    episodes: list[Episode] = []
    for lo in range(0, len(questions), batch_size):
        idx = list(range(lo, min(lo + batch_size, len(questions))))
        env = BatchedTextBrowserEnv([backend_for(i) for i in idx], config=config)
        obs, infos = env.reset([questions[i]["question"] for i in idx], seed=rng.randrange(1 << 30))
        eps = [Episode(questions[i]) for i in idx]
        while env.active():
            rows = env.active()
            actions = policy.act_batch([obs[r] for r in rows], [infos[r] for r in rows])
            for r, d in zip(rows, policy.last_decisions):
                if d.index >= 0 and keep_decisions:
                    eps[r].decisions.append(d)
            for r, (o, _, term, trunc, info) in env.step(dict(zip(rows, actions))).items():
                obs[r], infos[r] = o, info
                if term or trunc:
                    ans = info.get("answer") or {"question": info["question"], "text": "", "declined": True,
                                                 "quotes": info["quotes"]}
                    eps[r].answer = Answer.from_dict(ans)
                    eps[r].truncated = bool(trunc)
                    eps[r].gold = gold_judgement(eps[r].question, eps[r].answer)
        episodes.extend(eps)
        if progress:
            progress.update(len(idx))
    return episodes
