"""Best-of-n rejection sampling (WebGPT, Nakano et al. 2021, section 3.3): sample n episodes for a
question, score each final answer with the reward model, keep the best one.

No training: the reward model's preferences are applied at inference time, at n times the cost.
The chosen answer's distribution is a tilted version of the policy's; its KL divergence from the
policy is at most log n - (n-1)/n nats (`kl_bon`), which is what Gao et al. (2022) plot best-of-n
against when they compare it with RL (scripts/overoptimization.py).

Which candidate wins: an answered candidate always beats one that declined or ran out of actions,
and among answered candidates the highest reward-model score wins; ties go to the first sampled.
The reward model is trained on comparisons of answers and has never seen a decline, so its score
for one means nothing; a question the policy cannot answer in any of its n tries still comes
back declined. Every candidate is scored all the same (a decline renders as "(declined)"), so
the scores list is complete and the chosen one's score is always a number.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Sequence

from citeagent.policies.base import Policy, Samples
from citeagent.rollout import EpisodeResult, run_episodes


@dataclass
class BestOfN:
    result: EpisodeResult  # the chosen episode
    scores: list[float]  # the reward model's score of every candidate's final answer, in sampling order
    answered: list[bool]  # which candidates ended with an answer (not declined, not out of actions)
    chosen: int  # index of the chosen candidate
    kl_bon: float
    candidates: list[EpisodeResult] = field(default_factory=list, repr=False)

    @property
    def n(self) -> int:
        return len(self.scores)

    @property
    def score(self) -> float:
        return self.scores[self.chosen]

    def to_dict(self) -> dict:
        """What an evaluation record or `ask --json` stores. Every candidate's answer is kept, so
        another reward model can choose among the same samples later (`rerank`)."""
        out = {"n": self.n, "scores": [round(s, 6) for s in self.scores], "answered": self.answered,
               "chosen": self.chosen, "kl_bon": round(self.kl_bon, 6)}
        if self.candidates:
            out["answers"] = [c.answer.to_dict() for c in self.candidates]
        return out


def kl_bon(n: int) -> float:
    """KL(best-of-n || policy) in nats, the analytic bound log n - (n-1)/n (Stiennon et al. 2020,
    appendix G.3); exact when no two candidates tie."""
    if int(n) != n or n < 1:
        raise ValueError(f"best-of-n needs n >= 1, got {n}")
    return math.log(n) - (n - 1) / n


def is_answered(result: EpisodeResult) -> bool:
    a = result.answer
    return not result.truncated and not a.declined and bool(a.text.strip())


def rank_order(scores: Sequence[float], answered: Sequence[bool]) -> list[int]:
    """Candidate indices from worst to best: answered above unanswered, then by score, and of equal
    ones the earlier sampled ranks higher (ties go to the first)."""
    return sorted(range(len(scores)), key=lambda i: (bool(answered[i]), scores[i], -i))


def choose(scores: Sequence[float], answered: Sequence[bool]) -> int:
    return rank_order(scores, answered)[-1]


def expected_best_of_k(scores: Sequence[float], answered: Sequence[bool], values: Sequence[float], k: int) -> float:
    """E[value of the best-of-k choice] when k candidates are drawn without replacement from these
    n samples: unbiased for best-of-k from the policy, and much less noisy than sampling k-subsets.
    With candidates in ascending rank order, the one at rank i (0-based) is the best of a random
    k-subset with probability C(i, k-1) / C(n, k): it must be in the subset with k-1 of the i
    candidates below it."""
    n = len(scores)
    if not 1 <= k <= n:
        raise ValueError(f"best-of-{k} needs 1 <= k <= {n} samples")
    total = math.comb(n, k)
    return sum(math.comb(rank, k - 1) / total * values[i] for rank, i in enumerate(rank_order(scores, answered)))


def can_sample(policy: Policy) -> bool:
    """An LM policy samples (a temperature and a random generator); the baseline has neither."""
    return isinstance(policy, Samples)


def not_sampling(n: int, name: str) -> str:
    """n > 1: best-of-n's candidates; n = 1: `eval --sample`'s single sampled episode."""
    if n == 1:
        return (f"--sample needs a sampling policy: {name} is deterministic, so it has no sampled episode. Use "
                "--policy lm or a trained model directory (or drop --sample).")
    return (f"--best-of {n} needs a sampling policy: {name} is deterministic, so its candidates would all be "
            "the same episode. Use --policy lm or a trained model directory (or --best-of 1).")


@contextmanager
def sampling(policy: Policy, n: int, temperature: float = 1.0, always: bool = False):
    """The policy set up to sample n different candidates. A greedy LM policy (temperature 0)
    samples at `temperature` for the duration; a policy with no sampling (the baseline) is an error
    for n > 1, since its n candidates would be the same episode n times. n = 1 leaves the policy
    as it is unless `always`: a single sampled episode, best-of-n's k = 1 baseline."""
    if n == 1 and not always:
        yield policy
        return
    if not can_sample(policy):
        raise ValueError(not_sampling(n, policy.name))
    before = policy.temperature
    if before > 0:
        yield policy
        return
    if temperature <= 0:
        raise ValueError(f"--best-of {n} needs a sampling temperature above 0, got {temperature}")
    policy.temperature = temperature
    try:
        yield policy
    finally:
        policy.temperature = before


def best_of_n(
    backend_for,
    policy,
    questions: Sequence[str],
    n: int,
    reward_model,
    seed: int = 0,
    batch_size: int = 8,
    config=None,
    temperature: float = 1.0,
) -> list[BestOfN]:
    """Best of n episodes per question, chosen by `reward_model.score_batch(questions, answers)`.

    backend_for: a Backend, or a function of the question's index giving its Backend (as in
    rollout.run_episodes). Each question is repeated n times in the batches run_episodes steps
    together; an LM policy's random generator is shared by the rows, so each row draws its own
    sample. The generator is reseeded with `seed` first, so a call is reproducible. A greedy LM
    policy samples at `temperature` (default 1.0); see `sampling`. n = 1 is a plain run: nothing
    about the policy is changed."""
    if int(n) != n or n < 1:
        raise ValueError(f"--best-of must be at least 1, got {n}")
    kl = kl_bon(n)
    rows = [q for q in questions for _ in range(n)]  # question j's candidates are rows j*n .. j*n+n-1
    row_backend = (lambda r: backend_for(r // n)) if callable(backend_for) else backend_for
    with sampling(policy, n, temperature):
        if n > 1:
            policy.reseed(seed)
        results = run_episodes(row_backend, policy, rows, seed=seed, batch_size=batch_size, config=config)
    scores = [float(s) for s in reward_model.score_batch(rows, [r.answer for r in results])]
    out = []
    for j in range(len(questions)):
        cands, sc = results[j * n:(j + 1) * n], scores[j * n:(j + 1) * n]
        answered = [is_answered(r) for r in cands]
        best = choose(sc, answered)
        out.append(BestOfN(result=cands[best], scores=sc, answered=answered, chosen=best, kl_bon=kl, candidates=cands))
    return out


def stored_candidates(records: list[dict]) -> tuple[list[str], list, list[tuple[int, int]]]:
    """Every record's stored candidates, flattened: questions, answers and each record's (start,
    count). Cheap, so callers check records with it before loading a reward model."""
    from citeagent.answer import Answer

    questions, answers, spans = [], [], []
    for r in records:
        cands = (r.get("best_of") or {}).get("answers")
        if not cands:
            raise ValueError(f"record {r.get('id')!r} has no stored best-of-n candidates: rerank needs the records "
                             "of a `citeagent eval --best-of N` run made since candidates are kept (run it again).")
        spans.append((len(answers), len(cands)))
        for c in cands:
            answers.append(Answer.from_dict(c))
            questions.append(answers[-1].question)
    return questions, answers, spans


def rerank(records: list[dict], reward_model, candidates: tuple | None = None) -> list[dict]:
    """Best-of-n again, by another reward model, over the candidates an earlier `citeagent eval
    --best-of N` run stored in its records: the same samples, so two reward models are compared
    with no sampling noise between them. Returns one prediction line per record (the chosen answer,
    its id and score) for `citeagent eval --predictions`. A record without stored candidates (a run
    from before they were kept) is an error naming it. `candidates`: what `stored_candidates(records)`
    returned, for a caller that checked the records with it before loading the reward model."""
    questions, answers, spans = candidates or stored_candidates(records)
    scores = [float(s) for s in reward_model.score_batch(questions, answers)] if answers else []
    out = []
    for r, (start, n) in zip(records, spans):
        sc = scores[start:start + n]
        best = choose(sc, r["best_of"]["answered"])
        out.append({**answers[start + best].to_dict(), "id": r["id"], "score": sc[best], "chosen": best})
    return out


def load_scorer(path: str | None = None, device: str = "auto", purpose: str = "--best-of needs a reward model"):
    """The reward model best-of-n ranks by (or eval's decline curve, `purpose` saying which); a
    missing one is a one-line error saying how to get one. A directory holding rm.json is the CPU
    agent's reward model (`citeagent train cpu-rm`)."""
    from pathlib import Path

    from citeagent.reward import load_reward_model

    if path and (Path(path) / "rm.json").is_file():
        from citeagent.train.cpu_rm import AnswerRewardModel

        return AnswerRewardModel.load(path)

    try:
        return load_reward_model(path, device=device)
    except FileNotFoundError as e:
        msg = str(e)
        if "citeagent train rm" not in msg:
            msg += " Train one with `citeagent train rm`, or pass --reward-model DIR."
        raise FileNotFoundError(f"{purpose}: {msg}") from None


def describe(b: BestOfN) -> str:
    """The line `citeagent ask` prints under the answer."""
    return f"best of {b.n} by reward model (score {b.score:.2f}; KL_bon {b.kl_bon:.3f} nats)"

