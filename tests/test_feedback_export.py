"""Export of judgements in the openai/webgpt_comparisons schema, and reading it back for training."""
from __future__ import annotations

import json

import datasets
import pytest

from citeagent.feedback.auth import create_user
from citeagent.feedback.db import make_engine
from citeagent.feedback.export import export_judgements
from citeagent.feedback.judgements import JudgementForm, record_judgement
from citeagent.feedback.queue import enqueue, next_assignment, read_pairs
from citeagent.reward.schema import WEBGPT_COLUMNS, DataError
from citeagent.reward.sources import load_source, load_webgpt_file
from feedback_support import PASSWORD, XSS_TITLE, write_policy_answers


def form(pref: int) -> JudgementForm:
    return JudgementForm(preference=pref, left={"supported": True, "plausible": True, "harmful": False},
                         right={"supported": False, "plausible": False, "harmful": False}, reason=f"pref {pref}")


@pytest.fixture
def labelled(tmp_path):
    """A database where two annotators judged every one of three pairs (a tie among them)."""
    engine = make_engine(f"sqlite:///{tmp_path / 'labels.db'}")
    enqueue(engine, read_pairs(write_policy_answers(tmp_path / "a.jsonl", n_questions=3))[0])
    prefs = {"alice": [-3, 0, 2], "bob": [-1, -2, 3]}
    for name, ps in prefs.items():
        user = create_user(engine, name, PASSWORD, rounds=4)
        for p in ps:
            a = next_assignment(engine, user.id, labels_per_pair=2, shuffle=False)
            record_judgement(engine, user, a.id, a.pair_id, a.nonce, form(p), "v-test")
    assert next_assignment(engine, user.id, labels_per_pair=2) is None
    return engine


def test_jsonl_export_is_webgpt_schema_and_trains_the_same_reward_model(labelled, tmp_path):
    out = tmp_path / "export.jsonl"
    assert export_judgements(labelled, out) == 6
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    for r in rows:
        assert set(r) == set(WEBGPT_COLUMNS) | {"meta"}
        assert set(r["question"]) == {"dataset", "id", "full_text"}
        assert set(r["quotes_0"]) == {"title", "extract"} and len(r["quotes_0"]["title"]) == len(r["quotes_0"]["extract"])
        assert r["score_1"] == -r["score_0"] and -1 <= r["score_0"] <= 1
    # left shown = answer A (no shuffling): -3 (left much better) is score_0 = 1, 0 is a tie
    by_annotator = {}
    for r in rows:
        by_annotator.setdefault(r["meta"]["annotator"], []).append(r["score_0"])
    assert by_annotator == {"alice": [1.0, 0.0, pytest.approx(-2 / 3)], "bob": [pytest.approx(1 / 3), pytest.approx(2 / 3), -1.0]}
    first = rows[0]
    assert first["quotes_0"]["title"] == [XSS_TITLE]  # stored raw; escaping is the page's job
    assert first["meta"]["supported_0"] is True and first["meta"]["plausible_1"] is False
    assert first["meta"]["app_version"] == "v-test" and first["meta"]["reason"] == "pref -3"
    assert first["meta"]["answers"][0]["urls"] == ["javascript:window.__pwned=3"]

    comps, stats = load_webgpt_file(out)
    assert stats.kept == 6 and not stats.dropped
    assert [c.label() for c in comps[:3]] == [1.0, 0.5, 0.0]  # WebGPT labels: sign, ties 0.5
    assert [c.label("graded") for c in comps[:3]] == [1.0, 0.5, pytest.approx(1 / 6)]
    assert comps[0].answer_0.quotes[0].url == "javascript:window.__pwned=3"
    assert comps[0].meta["annotator"] == "alice"


def test_datasets_export_loads_back_identically(labelled, tmp_path):
    jsonl, ds_dir = tmp_path / "e.jsonl", tmp_path / "e_ds"
    export_judgements(labelled, jsonl)
    assert export_judgements(labelled, ds_dir) == 6
    ds = datasets.load_from_disk(str(ds_dir))
    assert set(ds.column_names) == set(WEBGPT_COLUMNS) | {"meta"} and len(ds) == 6
    a, _ = load_webgpt_file(jsonl)
    b, _ = load_source(str(ds_dir))
    assert [(c.question, c.answer_0, c.answer_1, c.score_0, c.id) for c in a] == \
           [(c.question, c.answer_0, c.answer_1, c.score_0, c.id) for c in b]
    # a second export replaces the first completely
    assert export_judgements(labelled, ds_dir) == 6 and len(datasets.load_from_disk(str(ds_dir))) == 6


def _rows(tmp_path, labelled):
    out = tmp_path / "export.jsonl"
    export_judgements(labelled, out)
    return [json.loads(line) for line in out.read_text().splitlines()]


@pytest.mark.parametrize("corrupt, message", [
    (lambda rows: rows[1].pop("answer_1"), "line 2: missing field.*answer_1"),
    (lambda rows: rows[2].update(score_0="much"), "line 3: score_0 must be a number"),
    (lambda rows: rows[2].update(score_0=1.5, score_1=-1.5), "line 3: score_0 must be a number from -1 to 1"),
    (lambda rows: rows[0].update(score_1=0.3), "line 1: score_1 must equal -score_0"),
    (lambda rows: rows[0].update(question={"id": "x"}), "line 1: question must have a 'full_text'"),
    (lambda rows: rows[3].update(quotes_1={"title": ["a", "b"], "extract": ["only one"]}), "line 4: quotes_1.*same length"),
    (lambda rows: rows[4].update(answer_1=rows[4]["answer_0"], quotes_1=rows[4]["quotes_0"],
                                 meta={**rows[4]["meta"], "answers": [rows[4]["meta"]["answers"][0]] * 2}), "line 5: .*identical"),
    (lambda rows: rows.append(dict(rows[0])), "line 7 duplicates .*line 1"),
    (lambda rows: rows[5].update(answer_0="   "), "line 6: answer_0 is empty"),
])
def test_malformed_export_rows_fail_with_the_row_named(labelled, tmp_path, corrupt, message):
    rows = _rows(tmp_path, labelled)
    corrupt(rows)
    bad = tmp_path / "bad.jsonl"
    bad.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError, match=message):
        load_webgpt_file(bad)


def test_not_json_and_not_a_dataset(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": {"full_text": "q"}}\n{oops\n')
    with pytest.raises(DataError, match="line 1: missing field"):
        load_webgpt_file(bad)
    bad.write_text("{oops\n")
    with pytest.raises(DataError, match="line 1: not valid JSON"):
        load_webgpt_file(bad)
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(DataError, match="not a datasets directory"):
        load_webgpt_file(tmp_path / "empty_dir")
