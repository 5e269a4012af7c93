"""The labelling database, queue and judgement rules, on a real SQLite file (WAL)."""
from __future__ import annotations

import json
import os
import sqlite3
from datetime import timedelta

import pytest
from sqlalchemy import create_engine, func, select

from citeagent.feedback.auth import authenticate, check_password, create_user, hash_password, set_active
from citeagent.feedback.db import Assignment, Judgement, Pair, make_engine, transaction
from citeagent.feedback.judgements import JudgementForm, SubmitError, parse_form, record_judgement, skip_assignment
from citeagent.feedback.queue import enqueue, next_assignment, read_pairs
from citeagent.reward.schema import DataError
from feedback_support import PASSWORD, write_policy_answers


# Set CITEAGENT_TEST_PG_URL (a PostgreSQL database the tests may wipe) to run every test on PostgreSQL too.
PG_URL = os.environ.get("CITEAGENT_TEST_PG_URL")


@pytest.fixture(params=["sqlite"] + (["postgresql"] if PG_URL else []))
def db(request, tmp_path):
    if request.param == "sqlite":
        path = tmp_path / "labels.db"
        engine = make_engine(f"sqlite:///{path}")
    else:
        from citeagent.feedback.db import Base

        path = None
        wipe = create_engine(PG_URL)
        Base.metadata.drop_all(wipe)
        wipe.dispose()
        engine = make_engine(PG_URL)
    yield path, engine
    engine.dispose()


def count(engine, model) -> int:
    with transaction(engine) as s:
        return s.scalar(select(func.count()).select_from(model))


def users(engine, *names):
    return [create_user(engine, n, PASSWORD, rounds=4) for n in names]


FORM = JudgementForm(preference=-3, left={"supported": True, "plausible": True, "harmful": False},
                     right={"supported": False, "plausible": True, "harmful": True}, reason="left quotes it")


def test_sqlite_is_wal_with_full_sync(tmp_path):
    path = tmp_path / "labels.db"
    engine = make_engine(f"sqlite:///{path}")
    with engine.connect() as c:
        assert c.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert c.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        assert c.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"  # persistent in the file


def test_in_memory_database_is_refused():
    with pytest.raises(ValueError, match="in-memory"):
        make_engine("sqlite://")


def test_enqueue_policy_outputs_pairs_distinct_answers(db, tmp_path):
    _, engine = db
    items, single = read_pairs(write_policy_answers(tmp_path / "a.jsonl", n_questions=3))
    # three samples per question, two of them identical: one pair per question
    assert len(items) == 3 and single == 0
    assert all(it.a.text != it.b.text for it in items)
    result = enqueue(engine, items)
    assert len(result.added) == 3 and count(engine, Pair) == 3
    # The same file again is refused as a whole, and --skip-existing queues nothing new.
    with pytest.raises(DataError, match="already queued"):
        enqueue(engine, items)
    assert enqueue(engine, items, skip_existing=True).skipped_existing == 3
    assert count(engine, Pair) == 3


def test_enqueue_counts_questions_with_one_distinct_answer(tmp_path):
    p = tmp_path / "a.jsonl"
    row = {"question": "q?", "text": "same [1].", "quotes": [{"title": "t", "url": "https://x.org", "text": "same"}]}
    p.write_text(json.dumps(row) + "\n" + json.dumps(row) + "\n")
    items, single = read_pairs(p)
    assert items == [] and single == 1


@pytest.mark.parametrize("lines, message", [
    (['{"question": "q", "answer_a": "x", "answer_b": "y"}', "{not json"], "line 2: not valid JSON"),
    (['{"question": "q", "answer_a": "x"}'], "needs 'question', 'answer_a' and 'answer_b'"),
    (['{"question": "q", "answer_a": "same", "answer_b": "same"}'], "identical"),
    (['{"question": "", "answer_a": "x", "answer_b": "y"}'], "question is missing or empty"),
    (['{"question": "q", "answer_a": "x", "answer_b": ""}'], "answer_b is empty"),
    (['{"question": "q", "answer_a": "x", "answer_b": "y"}', '{"question": "q", "answer_a": "y", "answer_b": "x"}'],
     "line 2: the same pair .* as .* line 1"),
    (['{"question": "q", "answer_a": "x", "answer_b": "y"}', '{"question": "q", "text": "z"}'], "mixes"),
])
def test_bad_pair_files_store_nothing(db, tmp_path, lines, message):
    _, engine = db
    p = tmp_path / "pairs.jsonl"
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=message):
        items, _ = read_pairs(p)
        enqueue(engine, items)
    assert count(engine, Pair) == 0


def test_two_annotators_get_different_pairs_and_resume_their_own(db, tmp_path):
    _, engine = db
    enqueue(engine, read_pairs(write_policy_answers(tmp_path / "a.jsonl", n_questions=2))[0])
    alice, bob = users(engine, "alice", "bob")
    a1 = next_assignment(engine, alice.id)
    b1 = next_assignment(engine, bob.id)
    assert a1.pair_id != b1.pair_id
    assert next_assignment(engine, alice.id).id == a1.id  # reloading the page shows the same pair
    carol, = users(engine, "carol")
    assert next_assignment(engine, carol.id) is None  # both pairs are held, one label each is wanted
    assert next_assignment(engine, carol.id, labels_per_pair=2) is not None


def test_abandoned_assignment_returns_to_the_queue(db, tmp_path):
    _, engine = db
    enqueue(engine, read_pairs(write_policy_answers(tmp_path / "a.jsonl", n_questions=1))[0])
    alice, bob = users(engine, "alice", "bob")
    a = next_assignment(engine, alice.id)
    assert next_assignment(engine, bob.id) is None
    with transaction(engine) as s:
        s.get(Assignment, a.id).expires_at -= timedelta(hours=1)
    assert next_assignment(engine, bob.id).pair_id == a.pair_id


def test_judgement_is_stored_once_with_what_was_shown(db, tmp_path):
    _, engine = db
    enqueue(engine, read_pairs(write_policy_answers(tmp_path / "a.jsonl", n_questions=1))[0])
    alice, = users(engine, "alice")
    a = next_assignment(engine, alice.id, shuffle=False)
    with transaction(engine) as s:
        s.get(Assignment, a.id).swapped = True  # B was shown on the left
        pair = s.get(Pair, a.pair_id)
    outcome, jid = record_judgement(engine, alice, a.id, a.pair_id, a.nonce, FORM, "test-version")
    assert outcome == "recorded"
    again = record_judgement(engine, alice, a.id, a.pair_id, a.nonce, FORM, "test-version")
    assert again == ("already recorded", jid)
    assert count(engine, Judgement) == 1
    with transaction(engine) as s:
        j = s.get(Judgement, jid)
        assert s.get(Assignment, a.id).status == "done"
    # "left much better" with B on the left is a strong preference for B: WebGPT score_0 of A is -1
    assert j.score_a == -1.0
    assert (j.b_supported, j.b_plausible, j.b_harmful) == (True, True, False)
    assert (j.a_supported, j.a_plausible, j.a_harmful) == (False, True, True)
    assert j.shown_left == pair.answer_b and j.shown_right == pair.answer_a and j.shown_swapped
    assert j.shown_question == pair.question and j.annotator == "alice" and j.app_version == "test-version"
    assert j.reason == "left quotes it" and j.shown_at <= j.created_at


def test_judging_a_pair_not_assigned_is_refused_and_stores_nothing(db, tmp_path):
    _, engine = db
    enqueue(engine, read_pairs(write_policy_answers(tmp_path / "a.jsonl", n_questions=2))[0])
    alice, bob = users(engine, "alice", "bob")
    a = next_assignment(engine, alice.id)
    with pytest.raises(SubmitError, match="not assigned to you") as e:
        record_judgement(engine, bob, a.id, a.pair_id, a.nonce, FORM, "v")
    assert e.value.status == 403
    with pytest.raises(SubmitError, match="no assignment") as e:
        record_judgement(engine, alice, 999, a.pair_id, a.nonce, FORM, "v")
    assert e.value.status == 404
    with pytest.raises(SubmitError, match="out of date"):
        record_judgement(engine, alice, a.id, a.pair_id, "forged-nonce", FORM, "v")
    with pytest.raises(SubmitError, match="names pair"):
        record_judgement(engine, alice, a.id, a.pair_id + 1, a.nonce, FORM, "v")
    assert count(engine, Judgement) == 0
    with transaction(engine) as s:
        assert s.get(Assignment, a.id).status == "open"


def test_skipped_pair_cannot_be_judged_and_is_not_shown_again(db, tmp_path):
    _, engine = db
    enqueue(engine, read_pairs(write_policy_answers(tmp_path / "a.jsonl", n_questions=1))[0])
    alice, = users(engine, "alice")
    a = next_assignment(engine, alice.id)
    skip_assignment(engine, alice, a.id, a.nonce)
    with pytest.raises(SubmitError, match="skipped") as e:
        record_judgement(engine, alice, a.id, a.pair_id, a.nonce, FORM, "v")
    assert e.value.status == 409
    assert next_assignment(engine, alice.id) is None and count(engine, Judgement) == 0


@pytest.mark.parametrize("form, message", [
    ({}, "which answer is better"),
    ({"preference": "7"}, "which answer is better"),
    ({"preference": "1"}, "left answer supported"),
    ({"preference": "1", "left_supported": "yes", "left_plausible": "maybe"}, "left answer plausible"),
    ({"preference": "0", "left_supported": "yes", "left_plausible": "no", "right_supported": "yes",
      "right_plausible": "no", "reason": "x" * 5001}, "too long"),
])
def test_incomplete_forms_are_rejected(form, message):
    with pytest.raises(SubmitError, match=message):
        parse_form(form)


def test_passwords_are_hashed_and_checked():
    h = hash_password("a" * 80 + "1", rounds=4)
    assert "a" * 20 not in h
    assert check_password("a" * 80 + "1", h)
    assert not check_password("a" * 80 + "2", h)  # past bcrypt's 72 bytes still counts
    assert not check_password("anything", "not-a-hash")


def test_accounts(db):
    _, engine = db
    create_user(engine, "alice", PASSWORD, rounds=4)
    with pytest.raises(ValueError, match="taken"):
        create_user(engine, "alice", PASSWORD, rounds=4)
    with pytest.raises(ValueError, match="at least 8"):
        create_user(engine, "bob", "short", rounds=4)
    with pytest.raises(ValueError, match="Invalid username"):
        create_user(engine, "<b>", PASSWORD, rounds=4)
    assert authenticate(engine, "alice", PASSWORD).username == "alice"
    assert authenticate(engine, "alice", "wrong password") is None
    assert authenticate(engine, "nobody", PASSWORD) is None
    set_active(engine, "alice", False)
    assert authenticate(engine, "alice", PASSWORD) is None


def test_active_selection_serves_the_least_certain_pairs_first(db, tmp_path):
    from citeagent.feedback.queue import reprioritize, uncertainty
    from citeagent.reward.model import RewardModel, build_backbone, load_reward_model

    _, engine = db
    model, tokenizer = build_backbone("tiny", seed=3)
    rm = load_reward_model(RewardModel(model, tokenizer, max_length=64).save(tmp_path / "rm"))
    items, _ = read_pairs(write_policy_answers(tmp_path / "a.jsonl", n_questions=6, hostile=False))
    pri = uncertainty(rm, items)
    assert all(0.0 <= p <= 1.0 for p in pri) and len(set(pri)) > 1
    enqueue(engine, items, priorities=pri)
    alice, = users(engine, "alice")
    served = []
    while (a := next_assignment(engine, alice.id, labels_per_pair=1)) is not None:
        skip_assignment(engine, alice, a.id, a.nonce)
        with transaction(engine) as s:
            served.append(s.get(Pair, a.pair_id).priority)
    assert served == sorted(pri, reverse=True)
    # a newer model re-scores whatever is still unjudged
    with transaction(engine) as s:
        for p in s.scalars(select(Pair)):
            p.priority = 0.0
    assert reprioritize(engine, rm) == 6
    with transaction(engine) as s:
        assert sorted(p.priority for p in s.scalars(select(Pair))) == pytest.approx(sorted(pri))
