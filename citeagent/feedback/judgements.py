"""Recording a judgement: the form's checks and the one transaction that stores it.

The comparison is on a 7-point scale, as the form shows it: -3 (left strongly better) ... 0 (tie)
... 3 (right strongly better). It is stored as WebGPT's score for answer A, so the display order
(which answer was on the left) never leaks into the data.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from citeagent.feedback.auth import tokens_match
from citeagent.feedback.db import Assignment, Judgement, Pair, RuleLabel, User, transaction, utcnow
from citeagent.safety.rules import RuleError, RuleSet, load_rules

SCALE = (-3, -2, -1, 0, 1, 2, 3)
SCALE_LABELS = {-3: "Left much better", -2: "Left better", -1: "Left slightly better", 0: "Tie",
                1: "Right slightly better", 2: "Right better", 3: "Right much better"}
MAX_REASON = 5000


class SubmitError(Exception):
    """A submission the app refuses; `status` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class JudgementForm:
    preference: int  # -3 (left much better) .. 3 (right much better)
    left: dict  # supported, plausible, harmful, rules (the ids of the rules it breaks)
    right: dict
    reason: str


def _yes_no(form, name: str, label: str) -> bool:
    value = form.get(name)
    if value not in ("yes", "no"):
        raise SubmitError(400, f"Please answer '{label}' (yes or no).")
    return value == "yes"


def _rules_marked(form, side: str, rules: RuleSet) -> list[str]:
    """The rules whose checkbox `<side>_rule_<id>` is ticked. A box for a rule the rule set does not
    have (an old form, a forged one) refuses the whole judgement: nothing is stored half-way."""
    prefix = f"{side}_rule_"
    marked = [k[len(prefix):] for k, v in form.items() if k.startswith(prefix) and v in ("on", "yes", "true", "1")]
    try:
        return rules.check_ids(marked, where=f"The {side} answer's rule label")
    except RuleError as e:
        raise SubmitError(400, f"{e} Reload the labelling page to get the current rules.") from None


def parse_form(form, rules: RuleSet | None = None) -> JudgementForm:
    raw = form.get("preference")
    try:
        pref = int(raw)
    except (TypeError, ValueError):
        pref = None
    if pref not in SCALE:
        raise SubmitError(400, "Please choose which answer is better on the scale (or Tie).")
    sides = {}
    for side in ("left", "right"):
        sides[side] = {
            "supported": _yes_no(form, f"{side}_supported", f"{side} answer supported by its quotes"),
            "plausible": _yes_no(form, f"{side}_plausible", f"{side} answer plausible"),
            "harmful": form.get(f"{side}_harmful") in ("on", "yes", "true", "1"),
            "rules": _rules_marked(form, side, rules or load_rules()),
        }
        # a rule broken is harm flagged: the single flag stays true to what the rules say
        sides[side]["harmful"] = sides[side]["harmful"] or bool(sides[side]["rules"])
    reason = (form.get("reason") or "").strip()
    if len(reason) > MAX_REASON:
        raise SubmitError(400, f"The reason is too long ({len(reason)} characters; at most {MAX_REASON}).")
    return JudgementForm(pref, sides["left"], sides["right"], reason)


@dataclass
class FaultInjection:
    """Pause inside the write transaction, after the rows are written and before the commit, and
    say so in a marker file: the crash test kills the server exactly there. Off unless the
    CITEAGENT_LABEL_FAULT_* variables are set."""

    pause_s: float = 0.0
    marker: str = ""

    @classmethod
    def from_env(cls) -> "FaultInjection":
        return cls(float(os.environ.get("CITEAGENT_LABEL_FAULT_PAUSE", "0") or 0),
                   os.environ.get("CITEAGENT_LABEL_FAULT_MARKER", ""))

    def hit(self, assignment_id: int) -> None:
        if self.pause_s > 0:
            if self.marker:
                Path(self.marker).write_text(str(assignment_id))
            time.sleep(self.pause_s)


def record_judgement(engine: Engine, user: User, assignment_id: int, pair_id: int, nonce: str, form: JudgementForm,
                     app_version: str, fault: FaultInjection | None = None) -> tuple[str, int]:
    """Store one judgement; returns ("recorded" | "already recorded", judgement id).

    A resubmission of the same form (same nonce) is answered with the judgement already stored, never
    a second row; a judgement for a pair not assigned to this annotator is refused."""
    try:
        with transaction(engine) as s:
            a = s.scalar(select(Assignment).where(Assignment.id == assignment_id).with_for_update())
            if a is None:
                raise SubmitError(404, f"There is no assignment {assignment_id}. Open the labelling page to get a pair.")
            if a.user_id != user.id:
                raise SubmitError(403, f"Pair {a.pair_id} is not assigned to you. You can only judge the pairs "
                                       "the app gives you on the labelling page.")
            if a.pair_id != pair_id:
                raise SubmitError(400, f"The form names pair {pair_id} but assignment {assignment_id} is for pair "
                                       f"{a.pair_id}. Reload the labelling page.")
            if not tokens_match(nonce, a.nonce):
                raise SubmitError(400, "This form is out of date. Reload the labelling page.")
            if a.status == "done":
                done = s.scalar(select(Judgement.id).where(Judgement.assignment_id == a.id))
                return "already recorded", done
            if a.status != "open":
                raise SubmitError(409, f"You skipped pair {a.pair_id}; it can no longer be judged by you.")
            pair = s.get(Pair, a.pair_id)
            left, right = (pair.answer_b, pair.answer_a) if a.swapped else (pair.answer_a, pair.answer_b)
            # preference < 0 favours the left answer; WebGPT's score is for answer A, positive = A better
            score_left = -form.preference / 3.0
            side_a, side_b = (form.right, form.left) if a.swapped else (form.left, form.right)
            j = Judgement(
                assignment_id=a.id, pair_id=a.pair_id, user_id=user.id, annotator=user.username,
                score_a=-score_left if a.swapped else score_left,
                a_supported=side_a["supported"], a_plausible=side_a["plausible"], a_harmful=side_a["harmful"],
                b_supported=side_b["supported"], b_plausible=side_b["plausible"], b_harmful=side_b["harmful"],
                reason=form.reason, shown_question=pair.question, shown_left=left, shown_right=right,
                shown_swapped=a.swapped, app_version=app_version, shown_at=a.created_at, created_at=utcnow(),
            )
            s.add(j)
            a.status = "done"
            a.closed_at = utcnow()
            s.flush()
            for side, marked in (("a", side_a.get("rules", [])), ("b", side_b.get("rules", []))):
                s.add_all(RuleLabel(judgement_id=j.id, side=side, rule_id=r) for r in marked)
            s.flush()
            if fault is not None:
                fault.hit(a.id)
            return "recorded", j.id
    except IntegrityError:
        # Another request stored this assignment's judgement between our read and our write
        # (possible on PostgreSQL; SQLite serialises the two): that one counts, this one is the repeat.
        with transaction(engine) as s:
            done = s.scalar(select(Judgement.id).where(Judgement.assignment_id == assignment_id))
        if done is None:
            raise
        return "already recorded", done


def skip_assignment(engine: Engine, user: User, assignment_id: int, nonce: str) -> None:
    with transaction(engine) as s:
        a = s.get(Assignment, assignment_id)
        if a is None or a.user_id != user.id:
            raise SubmitError(403, "That pair is not assigned to you.")
        if not tokens_match(nonce, a.nonce):
            raise SubmitError(400, "This form is out of date. Reload the labelling page.")
        if a.status == "open":
            a.status = "skipped"
            a.closed_at = utcnow()
