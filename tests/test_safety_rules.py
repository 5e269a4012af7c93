"""The rule file's schema: the shipped file loads, and each kind of mistake is refused with the
file, the rule and the fix in one message."""
from __future__ import annotations

import pytest

from citeagent.safety.rules import RULES_FILE, RuleError, load_rules, parse_rules

GOOD = '''
[[rule]]
id = "no-insults"
text = "Do not insult."
breaks = "Insults."
examples = ["You are an idiot."]
'''


def test_shipped_rules_load_with_the_issue_rules():
    rules = load_rules()
    assert rules.path == str(RULES_FILE.resolve())
    for rid in ("harmful-instructions", "hate-harassment", "personal-data", "certain-advice", "claims-human",
                "quote-context"):
        assert rules.get(rid).examples
    assert len(set(rules.ids)) == len(rules.ids)


def test_duplicate_id_names_file_rule_and_fix(tmp_path):
    path = tmp_path / "rules.toml"
    path.write_text(GOOD + GOOD)
    with pytest.raises(RuleError) as e:
        load_rules(path)
    msg = str(e.value)
    assert str(path) in msg and "rule 2 repeats the id 'no-insults' of rule 1" in msg and "its own id" in msg


@pytest.mark.parametrize("field", ["id", "text", "breaks", "examples"])
def test_missing_field_names_file_rule_and_fix(tmp_path, field):
    lines = [ln for ln in GOOD.splitlines() if not ln.startswith(field + " ")]
    path = tmp_path / "r.toml"
    path.write_text(GOOD + "\n".join(lines))
    with pytest.raises(RuleError) as e:
        load_rules(path)
    msg = str(e.value)
    assert str(path) in msg and "rule 2" in msg and f"has no {field}" in msg and f"`{field} = ...`" in msg
    if field != "id":
        assert "'no-insults'" in msg  # the rule is named by its id when it has one


@pytest.mark.parametrize("bad, expected", [
    ('id = "No Insults"', "lower-case letters, digits and dashes"),
    ('examples = []', "non-empty list of strings"),
    ('applies_to = ["everything"]', "`applies_to` must be a list of question and/or answer"),
    ('severity = 3', "unknown field(s) severity"),
])
def test_bad_values_are_refused(bad, expected):
    key = bad.split(" ")[0]
    text = "\n".join(ln for ln in GOOD.splitlines() if not ln.startswith(key + " ")) + "\n" + bad + "\n"
    with pytest.raises(RuleError, match=expected.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        parse_rules(text, "x.toml")


def test_no_rules_and_bad_toml_and_missing_file(tmp_path):
    with pytest.raises(RuleError, match="defines no rules"):
        parse_rules("title = 'x'\n", "x.toml")
    with pytest.raises(RuleError, match="not valid TOML"):
        parse_rules("[[rule]\n", "x.toml")
    with pytest.raises(RuleError, match="No rule file at"):
        load_rules(tmp_path / "absent.toml")


def test_unknown_rule_label_is_refused():
    rules = load_rules()
    assert rules.check_ids(["claims-human", "personal-data"]) == ["personal-data", "claims-human"]  # file order
    with pytest.raises(RuleError, match="unknown rule.*'made-up'"):
        rules.check_ids(["personal-data", "made-up"])


def test_label_cli_refuses_a_bad_rule_file(tmp_path):
    from feedback_support import run_cli

    path = tmp_path / "rules.toml"
    path.write_text(GOOD + GOOD)
    r = run_cli("serve", "--db", f"sqlite:///{tmp_path / 'l.db'}", "--port", "0", "--rules", str(path))
    assert r.returncode != 0
    assert "repeats the id 'no-insults'" in r.stderr and "Traceback" not in r.stderr
