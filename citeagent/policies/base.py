"""The policy interface: what rollouts, best-of-n, evaluation and trainers may rely on.

Every policy is a `Policy`: observation text and the browser's `info` in, one command out (or,
in the answering phase, the answer text). `info` carries everything a policy needs to decide
(docs/ENV_SPEC.md lists its keys), so a policy never has to parse the observation text.

Anything more is an optional capability, each its own protocol; code that uses one checks for it
with isinstance, and a policy gains it by having the members:

- HasBrowserLayout: the browser layout (BrowserConfig fields) the policy was trained with.
- ScoresConfidence: its own confidence in a final answer (decline-to-answer curves).
- CountsTokens: the tokens it generated, in all and per row of its last act_batch.
- RecordsGenerations: per row of its last act_batch, the prompt ids, command ids and log-probs
  (a policies.constrained.Generation) that training code learns from.
- Samples: it samples at a settable temperature from a generator that can be reseeded (best-of-n
  needs this: a deterministic policy's n candidates would be one episode n times).
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class Policy(Protocol):
    name: str

    def act(self, observation: str, info: dict) -> str:
        """Return the next command (or, in the answering phase, the answer text)."""
        ...

    def act_batch(self, observations: list[str], infos: list[dict]) -> list[str]:
        """One command per row; the rows are independent episodes."""
        ...


@runtime_checkable
class HasBrowserLayout(Protocol):
    browser_overrides: dict  # BrowserConfig fields (window size, result count, ...) to browse with


@runtime_checkable
class ScoresConfidence(Protocol):
    def confidence(self, answer: dict) -> float:
        """Higher for an answer (the browser's answer dict) the policy is surer of."""
        ...


@runtime_checkable
class CountsTokens(Protocol):
    tokens_generated: int  # since the policy was made
    last_tokens: list[int]  # per row of the last act_batch


@runtime_checkable
class RecordsGenerations(Protocol):
    last_generations: list  # per row of the last act_batch: a policies.constrained.Generation


@runtime_checkable
class Samples(Protocol):
    temperature: float  # 0 = greedy; settable

    def reseed(self, seed: int) -> None:
        """Restart the sampling generator, so that a run is reproducible."""
        ...
