"""The rule set: loading rules.toml (or another file) and checking its schema.

A malformed file is refused as a whole with one message naming the file, the rule and the fix:
a half-loaded rule set would let the app store labels for rules the classifier never learns.
"""
from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

RULES_FILE = Path(__file__).with_name("rules.toml")
REQUIRED = ("id", "text", "breaks", "examples")
SCOPES = ("question", "answer")
_ID = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")


class RuleError(ValueError):
    """A rule file or a rule label that cannot be used; the message says what to fix."""


@dataclass(frozen=True)
class Rule:
    id: str
    text: str
    breaks: str  # what breaks it, for annotators
    examples: tuple[str, ...]
    applies_to: tuple[str, ...] = ("answer",)  # "question": a request alone can break it


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[Rule, ...]
    path: str

    @property
    def ids(self) -> list[str]:
        return [r.id for r in self.rules]

    def get(self, rule_id: str) -> Rule:
        for r in self.rules:
            if r.id == rule_id:
                return r
        raise RuleError(f"Unknown rule {rule_id!r}; the rules in {self.path} are: {', '.join(self.ids)}.")

    def check_ids(self, ids, where: str = "the label") -> list[str]:
        """The ids, each checked to be a rule of this set, in rule-file order without repeats."""
        ids = set(ids)
        unknown = sorted(str(i) for i in ids - set(self.ids))
        if unknown:
            raise RuleError(f"{where} names unknown rule(s) {', '.join(map(repr, unknown))}; the rules in "
                            f"{self.path} are: {', '.join(self.ids)}.")
        return [i for i in self.ids if i in ids]


def _check_rule(raw, n: int, path: str) -> Rule:
    where = f"{path}: rule {n}"
    if not isinstance(raw, dict):
        raise RuleError(f"{where} is not a table; write each rule as a [[rule]] table with {', '.join(REQUIRED)}.")
    if isinstance(raw.get("id"), str):
        where += f" ({raw['id']!r})"
    missing = [k for k in REQUIRED if k not in raw]
    if missing:
        raise RuleError(f"{where} has no {', '.join(missing)}; add {' and '.join(f'`{k} = ...`' for k in missing)} "
                        "to its [[rule]] table.")
    for key in ("id", "text", "breaks"):
        if not isinstance(raw[key], str) or not raw[key].strip():
            raise RuleError(f"{where}: `{key}` must be a non-empty string.")
    if not _ID.match(raw["id"]):
        raise RuleError(f"{where}: id {raw['id']!r} must be lower-case letters, digits and dashes (e.g. 'personal-data').")
    examples = raw["examples"]
    if not isinstance(examples, list) or not examples or not all(isinstance(e, str) and e.strip() for e in examples):
        raise RuleError(f"{where}: `examples` must be a non-empty list of strings (answers or requests that break it).")
    scope = raw.get("applies_to", ["answer"])
    if not isinstance(scope, list) or not scope or any(s not in SCOPES for s in scope):
        raise RuleError(f"{where}: `applies_to` must be a list of {' and/or '.join(SCOPES)}, got {scope!r}.")
    extra = sorted(set(raw) - set(REQUIRED) - {"applies_to"})
    if extra:
        raise RuleError(f"{where} has unknown field(s) {', '.join(extra)}; the fields are {', '.join(REQUIRED)}, applies_to.")
    return Rule(raw["id"], raw["text"].strip(), raw["breaks"].strip(), tuple(e.strip() for e in examples), tuple(scope))


def parse_rules(text: str, path: str = "<rules>") -> RuleSet:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise RuleError(f"{path} is not valid TOML ({e}); fix the syntax there.") from None
    raws = data.get("rule")
    if not isinstance(raws, list) or not raws:
        raise RuleError(f"{path} defines no rules; add at least one [[rule]] table with {', '.join(REQUIRED)}.")
    rules, seen = [], {}
    for n, raw in enumerate(raws, 1):
        rule = _check_rule(raw, n, path)
        if rule.id in seen:
            raise RuleError(f"{path}: rule {n} repeats the id {rule.id!r} of rule {seen[rule.id]}; give each rule its own id.")
        seen[rule.id] = n
        rules.append(rule)
    return RuleSet(tuple(rules), path)


def load_rules(path: str | Path | None = None) -> RuleSet:
    """The rule set in `path` (default: the one shipped beside this module)."""
    path = Path(path) if path else RULES_FILE
    if not path.is_file():
        raise RuleError(f"No rule file at {path}; pass the path of a TOML file of [[rule]] tables.")
    return _load_cached(str(path.resolve()), path.stat().st_mtime_ns)


@lru_cache(maxsize=8)
def _load_cached(path: str, _mtime: int) -> RuleSet:
    return parse_rules(Path(path).read_text(encoding="utf-8"), path)
