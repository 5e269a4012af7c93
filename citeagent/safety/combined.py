"""The combined reward, as Sparrow combined its models: the support (helpfulness) reward model plus
the harmlessness preference model, minus a penalty for every rule the answer probably breaks.

    reward = support_weight * support + harmless_weight * harmless - rule_weight * sum_r P(breaks r)

A declined answer breaks no rule, so its rule penalty is 0.

A component whose weight is 0 is never loaded or run. The object has the reward model's
`score_batch(questions, answers)`, so best-of-n, `rerank` and the RL trainers take it wherever
they take a reward model.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

from citeagent.answer import Answer


@dataclass
class CombinedRewardConfig:
    support_weight: float = 1.0  # `citeagent train rm`'s reward model: is the answer supported and helpful
    harmless_weight: float = 1.0  # the harmlessness preference model
    rule_weight: float = 2.0  # per rule, times the classifier's P(breaks it)
    support_model: str | None = None  # None: the default reward model
    harmless_model: str | None = None  # None: the one shipped in citeagent/safety/weights
    rule_model: str | None = None

    def __post_init__(self):
        if min(self.support_weight, self.harmless_weight, self.rule_weight) < 0:
            raise ValueError("the combined reward's weights must be 0 or more (a weight of 0 leaves that model out)")


WEIGHT_NAMES = {"support": "support_weight", "harmless": "harmless_weight", "rule": "rule_weight"}


def parse_weights(spec: str | None, allowed: tuple[str, ...] = tuple(WEIGHT_NAMES),
                  flag: str = "--combined-reward") -> CombinedRewardConfig:
    """"default" (or empty) or "support=1,harmless=0.5,rule=4": the config with those weights.
    `allowed`: the weights `flag` may name (the others keep their defaults)."""
    if not spec or spec.strip() == "default":
        return CombinedRewardConfig()
    kw = {}
    for part in spec.split(","):
        name, sep, value = part.partition("=")
        name = name.strip()
        if sep and name in WEIGHT_NAMES and name not in allowed:
            raise ValueError(f"{flag}: name only {' and '.join(allowed)} weights, not {name}")
        if not sep or name not in allowed:
            raise ValueError(f"{flag}: {part.strip()!r} is not NAME=WEIGHT with NAME one of "
                             f"{', '.join(allowed)} (e.g. {','.join(f'{n}=1' for n in allowed)})")
        try:
            kw[WEIGHT_NAMES[name]] = float(value)
        except ValueError:
            raise ValueError(f"{flag}: the weight of {name} must be a number, got {value!r}") from None
    return CombinedRewardConfig(**kw)


class CombinedReward:
    """`support`, `harmless`, `rules`: a reward model, a HarmlessnessPM and a RuleClassifier (or
    anything with their methods); None where the weight is 0."""

    def __init__(self, config: CombinedRewardConfig, support=None, harmless=None, rules=None):
        self.config = config
        for name, model, weight in (("support", support, config.support_weight),
                                    ("harmless", harmless, config.harmless_weight), ("rules", rules, config.rule_weight)):
            if weight > 0 and model is None:
                raise ValueError(f"the combined reward weighs the {name} model ({weight}) but none was given")
        self.support, self.harmless, self.rules = support, harmless, rules

    def components(self, questions: Sequence[str], answers: Sequence[Answer]) -> list[dict]:
        """Each part of every answer's reward, and the total: what a record stores to explain it."""
        if len(questions) != len(answers):
            raise ValueError(f"got {len(questions)} questions but {len(answers)} answers")
        c = self.config
        n = len(answers)
        support = self.support.score_batch(list(questions), list(answers)) if c.support_weight > 0 else [None] * n
        harmless = self.harmless.score_batch(questions, answers) if c.harmless_weight > 0 else [None] * n
        probs = self.rules.probs(questions, answers) if c.rule_weight > 0 else [None] * n
        out = []
        for a, s, h, p in zip(answers, support, harmless, probs):
            # a decline breaks no rule (rule_model.violations); the classifier's probabilities for
            # one come from the question alone, and would make declining a harmful request cost
            # more than answering it
            penalty = sum(p.values()) if p and not a.declined else 0.0
            total = c.support_weight * (s or 0.0) + c.harmless_weight * (h or 0.0) - c.rule_weight * penalty
            out.append({"support": s, "harmless": h, "rule_probs": p, "rule_penalty": penalty, "reward": total})
        return out

    def score_batch(self, questions: Sequence[str], answers: Sequence[Answer], batch_size: int | None = None) -> list[float]:
        return [c["reward"] for c in self.components(questions, answers)]

    def score(self, question: str, answer: Answer) -> float:
        return self.score_batch([question], [answer])[0]

    @property
    def meta(self) -> dict:
        return {"combined_reward": asdict(self.config)}


def load_combined_reward(config: CombinedRewardConfig | None = None, device: str = "auto", encoder=None) -> CombinedReward:
    """The three models the weights ask for; the two safety models share one sentence encoder."""
    config = config or CombinedRewardConfig()
    support = harmless = rules = None
    if config.support_weight > 0:
        from citeagent.policies.best_of_n import load_scorer

        support = load_scorer(config.support_model, device=device)
    if config.harmless_weight > 0 or config.rule_weight > 0:
        from citeagent.safety.features import TextEncoder

        encoder = encoder or TextEncoder()
    if config.harmless_weight > 0:
        from citeagent.safety.harmless_pm import load_harmless_pm

        harmless = load_harmless_pm(config.harmless_model, encoder=encoder)
    if config.rule_weight > 0:
        from citeagent.safety.rule_model import load_rule_classifier

        rules = load_rule_classifier(config.rule_model, encoder=encoder)
    return CombinedReward(config, support, harmless, rules)
