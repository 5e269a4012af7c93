"""Running a policy in the browser: one episode, or many stepped together in a batch."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

from citeagent.answer import Answer
from citeagent.policies.base import CountsTokens, HasBrowserLayout, Policy, RecordsGenerations, ScoresConfidence
from citeenv.backends import Backend
from citeenv.browser import BrowserConfig
from citeenv.gym_env import BatchedTextBrowserEnv


@dataclass
class EpisodeResult:
    question: str
    answer: Answer
    trace: list[dict] = field(default_factory=list)  # {observation, action, valid, error}
    n_actions: int = 0
    n_invalid: int = 0
    tokens_generated: int = 0
    seconds: float = 0.0
    terminated: bool = False
    truncated: bool = False
    score: float | None = None  # the policy's own confidence in its answer
    # Per step, the LM policy's Generation (prompt ids, token ids, log-probs) for training code;
    # empty for policies that have none. Not part of to_dict (records stay text).
    generations: list = field(default_factory=list, repr=False)

    def to_dict(self) -> dict:
        d = {k: v for k, v in asdict(self).items() if k != "generations"}
        d["answer"] = self.answer.to_dict()
        return d


def browser_config(policy: Policy, **fields) -> BrowserConfig:
    """The browser a policy runs in: its saved layout (a trained model's window size, result count,
    ...; see HasBrowserLayout), then the caller's fields (e.g. max_actions) on top."""
    saved = dict(policy.browser_overrides) if isinstance(policy, HasBrowserLayout) else {}
    saved.pop("max_actions", None)  # the action budget is the caller's choice
    return BrowserConfig(**(saved | fields))


def run_episodes(
    backend_for: Backend | Callable[[int], Backend],
    policy: Policy,
    questions: Sequence[str],
    seed: int = 0,
    batch_size: int = 8,
    config: BrowserConfig | None = None,
    on_step: Callable[[int, str, str, dict], None] | None = None,
) -> list[EpisodeResult]:
    """Run one episode per question, `batch_size` at a time; the policy sees each batch's live rows
    together so a model policy makes one batched call per step."""
    results: list[EpisodeResult] = []
    for lo in range(0, len(questions), batch_size):
        idx = list(range(lo, min(lo + batch_size, len(questions))))
        backends = [backend_for(i) if callable(backend_for) else backend_for for i in idx]
        results.extend(_run_batch(backends, policy, [questions[i] for i in idx], seed + lo, config, on_step))
    return results


def run_episode(backend: Backend, policy: Policy, question: str, seed: int = 0, config: BrowserConfig | None = None,
                on_step=None) -> EpisodeResult:
    return run_episodes(backend, policy, [question], seed=seed, batch_size=1, config=config, on_step=on_step)[0]


def _run_batch(backends, policy, questions, seed, config, on_step) -> list[EpisodeResult]:
    env = BatchedTextBrowserEnv(backends, config=config)
    obs, infos = env.reset(questions, seed=seed)
    n = len(questions)
    traces: list[list[dict]] = [[] for _ in range(n)]
    tokens = [0] * n
    # Each step's wall clock is split evenly among the rows live in it: an episode's seconds are
    # its share of the batch's time, longer for a longer episode, and they add up to the batch's.
    seconds = [0.0] * n
    gens: list[list] = [[] for _ in range(n)]
    final: list[tuple] = [None] * n  # (terminated, truncated, info)
    counts, records = isinstance(policy, CountsTokens), isinstance(policy, RecordsGenerations)
    while env.active():
        rows = env.active()
        t0 = time.perf_counter()
        actions = policy.act_batch([obs[i] for i in rows], [infos[i] for i in rows])
        out = env.step(dict(zip(rows, actions)))
        share = (time.perf_counter() - t0) / len(rows)
        for j, i in enumerate(rows):
            seconds[i] += share
            o, _, term, trunc, info = out[i]
            if counts:
                tokens[i] += policy.last_tokens[j]
            traces[i].append({"observation": obs[i], "action": actions[j], "valid": info["error"] is None, "error": info["error"]})
            if records:
                gens[i].append(policy.last_generations[j])
            if on_step:
                on_step(i, obs[i], actions[j], info)
            obs[i], infos[i] = o, info
            if term or trunc:
                final[i] = (term, trunc, info)
    results = []
    for i in range(n):
        term, trunc, info = final[i]
        ans = info.get("answer") or {"question": questions[i], "text": "", "declined": True, "quotes": info["quotes"]}
        answer = Answer.from_dict(ans)
        if trunc:
            answer.declined = False  # ran out of actions: no answer, which is not a deliberate decline
        conf = policy.confidence(ans) if isinstance(policy, ScoresConfidence) and not answer.declined else None
        results.append(
            EpisodeResult(
                question=questions[i], answer=answer, trace=traces[i], n_actions=len(traces[i]),
                n_invalid=info["n_invalid"], tokens_generated=tokens[i], seconds=seconds[i],
                terminated=term, truncated=trunc, score=conf, generations=gens[i],
            )
        )
    return results
