"""Principled declining: `End: Decline` when the rule classifier flags the question, or flags every
candidate answer. A step in the ask and eval paths, not part of any policy, so it works for all of
them: the question is checked before the policy runs (a flagged one is never browsed for), and the
finished answers after (the best unflagged candidate is kept; none left means decline).

What the gate decided travels with the answer as a `SafetyDecision`, so `citeagent ask` can say
which rule made it decline and an evaluation record can keep the answer it withheld.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Callable, Sequence

from citeagent.answer import Answer


@dataclass
class SafetyDecision:
    declined_by: str | None = None  # "question" | "answers" | "reward" | None (answered)
    rule: str | None = None  # the rule that made it decline (the most probable one)
    rule_text: str = ""
    prob: float | None = None
    chosen: int | None = None  # the candidate kept (None: declined)
    flagged: list[list[str]] = field(default_factory=list)  # per candidate, the rules it was flagged for
    withheld: dict | None = None  # the answer the policy gave and the gate replaced by a decline

    @property
    def declined(self) -> bool:
        return self.declined_by is not None

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        """The line `citeagent ask` prints for a decline."""
        if self.declined_by == "question":
            return f"Declined: answering would break the rule '{self.rule}': {self.rule_text}"
        if self.declined_by == "answers":
            n = len(self.flagged)
            what = "the answer" if n == 1 else f"all {n} candidate answers"
            return f"Declined: {what} broke the rule '{self.rule}': {self.rule_text}"
        if self.declined_by == "reward":
            return "Declined: the combined reward prefers declining to every candidate answer."
        return ""


class SafetyGate:
    def __init__(self, classifier):
        self.classifier = classifier

    def _rule_text(self, rule_id: str) -> str:
        return self.classifier.rules.get(rule_id).text

    def check_questions(self, questions: Sequence[str]) -> list[SafetyDecision]:
        """Per question: declined (by the most probable flagged rule) or not."""
        out = []
        for flags in self.classifier.check_questions(questions):
            if flags:
                top = flags[0]
                out.append(SafetyDecision("question", top.rule, self._rule_text(top.rule), top.prob))
            else:
                out.append(SafetyDecision())
        return out

    def choose(self, question: str, candidates: Sequence[Answer], preferred: Sequence[int],
               below_decline: Sequence[bool] | None = None) -> SafetyDecision:
        """Keep the first candidate in `preferred` order (best first) that breaks no rule; decline
        when every one does. Candidates that already declined break none. `below_decline`: per
        candidate, whether a reward scores it below declining (Sparrow's reranking with a decline
        among the options); such a candidate is not kept either."""
        flags = self.classifier.check_answers([question] * len(candidates), list(candidates))
        decision = SafetyDecision(flagged=[[v.rule for v in f] for f in flags])
        below = list(below_decline) if below_decline is not None else [False] * len(candidates)
        for i in preferred:
            if not flags[i] and not below[i]:
                decision.chosen = i
                return decision
        if not any(flags):
            decision.declined_by = "reward"
            return decision
        worst = max((v for f in flags for v in f), key=lambda v: v.prob)
        decision.declined_by, decision.rule, decision.prob = "answers", worst.rule, worst.prob
        decision.rule_text = self._rule_text(worst.rule)
        return decision


def gated(gate: SafetyGate | None, questions: Sequence[str], sample: Callable, reward=None) -> list[tuple]:
    """Run a policy behind the gate: (episode, best-of-n record or None, SafetyDecision or None)
    per question. `sample(indices)` runs the policy on those questions only and returns (episode,
    best-of-n record or None) for each; a flagged question is never run, a flagged answer is
    replaced by the best unflagged candidate or by a decline. gate None: `sample` on everything.
    `reward` (e.g. the combined reward): with a gate, a candidate it scores below a decline of the
    same question is not kept."""
    from citeagent.policies.best_of_n import rank_order
    from citeagent.rollout import EpisodeResult

    decisions = gate.check_questions(questions) if gate is not None else [None] * len(questions)
    todo = [i for i, d in enumerate(decisions) if d is None or not d.declined]
    ran = dict(zip(todo, sample(todo))) if todo else {}
    out = []
    for i, q in enumerate(questions):
        d = decisions[i]
        if d is not None and d.declined:
            step = {"observation": "", "action": "End: Decline", "valid": True, "error": None, "safety": "question flagged"}
            out.append((EpisodeResult(q, declined_answer(q), trace=[step], terminated=True), None, d))
            continue
        res, bon = ran[i]
        if gate is not None:
            if bon is not None:
                cands, preferred = [c.answer for c in bon.candidates], rank_order(bon.scores, bon.answered)[::-1]
            else:
                cands, preferred = [res.answer], [0]
            below = None
            if reward is not None:
                scores = reward.score_batch([q] * (len(cands) + 1), [*cands, declined_answer(q)])
                below = [s < scores[-1] for s in scores[:-1]]
            d = gate.choose(q, cands, preferred, below)
            if d.declined:
                d.withheld = res.answer.to_dict()
                res = replace(res, answer=declined_answer(q))
            elif bon is not None and d.chosen != bon.chosen:
                bon.chosen, bon.result = d.chosen, bon.candidates[d.chosen]
                res = bon.result
        out.append((res, bon, d))
    return out


def declined_answer(question: str) -> Answer:
    return Answer(question=question, text="", quotes=[], declined=True)


def load_gate(rule_model: str | None = None, encoder=None) -> SafetyGate:
    from citeagent.safety.rule_model import load_rule_classifier

    return SafetyGate(load_rule_classifier(rule_model, encoder=encoder))
