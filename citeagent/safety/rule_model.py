"""The rule-violation classifier (Sparrow's rule models, as one multi-label model): a head on frozen
MiniLM embeddings of (question, answer) giving, for every rule, the probability that the answer
breaks it. A question alone is scored as the question with an empty answer: the probability that
answering it at all breaks a rule that a request can break (`applies_to` includes "question").
Trained by `citeagent train rules`; the trained head ships in the repository (weights/rules)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from citeagent.answer import Answer
from citeagent.safety.features import TextEncoder, features
from citeagent.safety import RULES_CLF_DIR
from citeagent.safety.heads import load_head
from citeagent.safety.rules import RuleSet, load_rules

DEFAULT_DIR = RULES_CLF_DIR
TRAIN_COMMAND = "citeagent train rules"


@dataclass
class Violation:
    rule: str  # the rule id
    prob: float
    threshold: float


class RuleClassifier:
    def __init__(self, head: torch.nn.Module, meta: dict, encoder: TextEncoder | None = None, rules: RuleSet | None = None):
        self.head = head
        self.meta = meta
        self.rule_ids: list[str] = list(meta["rules"])
        self.thresholds: dict[str, float] = {r: float(t) for r, t in meta["thresholds"].items()}
        self.encoder = encoder or TextEncoder(meta.get("encoder"))
        self.rules = rules or load_rules()
        missing = [r for r in self.rule_ids if r not in self.rules.ids]
        if missing:
            raise ValueError(f"The rule classifier was trained on rule(s) {', '.join(missing)} that {self.rules.path} no "
                             f"longer has; retrain it with `{TRAIN_COMMAND}`.")
        self.question_rules = {r.id for r in self.rules.rules if "question" in r.applies_to}

    @torch.inference_mode()
    def probs(self, questions: Sequence[str], answers: Sequence[Answer]) -> list[dict[str, float]]:
        """P(breaks rule) for every rule the classifier knows, per (question, answer)."""
        if not answers:
            return []
        x = torch.from_numpy(features(self.encoder, "qa", questions, answers))
        p = torch.sigmoid(self.head(x))
        return [{r: float(row[i]) for i, r in enumerate(self.rule_ids)} for row in p]

    def violations(self, probs: dict[str, float], rules: set[str] | None = None) -> list[Violation]:
        """The rules these probabilities flag, most probable first; `rules` limits which count."""
        out = [Violation(r, p, self.thresholds[r]) for r, p in probs.items()
               if p >= self.thresholds[r] and (rules is None or r in rules)]
        return sorted(out, key=lambda v: -v.prob)

    def check_answers(self, questions: Sequence[str], answers: Sequence[Answer]) -> list[list[Violation]]:
        # A declined answer breaks no rule: declining is what the rules ask for.
        probs = self.probs(questions, answers)
        return [[] if a.declined else self.violations(p) for a, p in zip(answers, probs)]

    def check_questions(self, questions: Sequence[str]) -> list[list[Violation]]:
        probs = self.probs(questions, [Answer(q, "") for q in questions])
        return [self.violations(p, self.question_rules) for p in probs]


def load_rule_classifier(path: str | Path | None = None, encoder: TextEncoder | None = None,
                         rules: RuleSet | None = None) -> RuleClassifier:
    """The classifier in `path` (None or "default": the one shipped with citeagent)."""
    path = DEFAULT_DIR if not path or str(path) == "default" else Path(path)
    head, meta = load_head(path, "rule classifier", TRAIN_COMMAND)
    return RuleClassifier(head, meta, encoder, rules)
