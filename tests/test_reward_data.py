"""Preference data: the comparison schema, every adapter (on the real shared data), the gold judge
and the held-out split."""
from __future__ import annotations

from dataclasses import replace

import datasets
import pytest

from citeagent.answer import Answer, Quote
from citeagent.eval.datasets import hotpotqa_split
from citeagent.reward.gold_judge import (gold_score, heldout_question_rows, judge_pair, read_hotpot_records,
                                         synthetic_comparisons)
from citeagent.reward.schema import Comparison, DataError, from_webgpt_row, to_webgpt_row
from citeagent.reward.sources import load_source, load_sources, load_webgpt_rows, split_heldout

# Rows exactly as the hub's openai/webgpt_comparisons yields them (quotes as {title: [...], extract: [...]}).
WEBGPT_FEATURES = datasets.Features({
    "question": {"dataset": datasets.Value("string"), "id": datasets.Value("string"), "full_text": datasets.Value("string")},
    "quotes_0": datasets.Sequence({"title": datasets.Value("string"), "extract": datasets.Value("string")}),
    "answer_0": datasets.Value("string"), "tokens_0": datasets.Sequence(datasets.Value("int64")),
    "score_0": datasets.Value("float64"),
    "quotes_1": datasets.Sequence({"title": datasets.Value("string"), "extract": datasets.Value("string")}),
    "answer_1": datasets.Value("string"), "tokens_1": datasets.Sequence(datasets.Value("int64")),
    "score_1": datasets.Value("float64"),
})


def webgpt_row(i: int, score: float, a1: str | None = None) -> dict:
    return {
        "question": {"dataset": "eli5", "id": f"q{i}", "full_text": f"Why is the sky blue? ({i})"},
        "quotes_0": {"title": ["Rayleigh scattering - Wikipedia (en.wikipedia.org)"],
                     "extract": ["Rayleigh scattering is the scattering of light by particles smaller than its wavelength."]},
        "answer_0": "Because of Rayleigh scattering [1].", "tokens_0": [1, 2, 3], "score_0": score,
        "quotes_1": {"title": [], "extract": []}, "answer_1": a1 if a1 is not None else "Because the sea is blue.",
        "tokens_1": [4, 5], "score_1": -score,
    }


def test_webgpt_rows_from_a_datasets_table_in_the_hub_schema():
    rows = [webgpt_row(0, 1.0), webgpt_row(1, 0.0), webgpt_row(2, -0.5),
            webgpt_row(3, 1.0, a1="Because of Rayleigh scattering [1]."),  # answer_1 text same but no quotes: kept
            webgpt_row(0, 1.0)]  # an exact repeat of row 1: dropped from public data, and counted
    ds = datasets.Dataset.from_list(rows, features=WEBGPT_FEATURES)
    comps, stats = load_webgpt_rows(((f"row {i + 1}", r) for i, r in enumerate(ds)), "webgpt", strict=False)
    assert stats.rows == 5 and stats.kept == 4 and stats.dropped == {"duplicate": 1}
    c = comps[0]
    assert c.question == "Why is the sky blue? (0)" and c.id == "q0" and c.source == "eli5"
    assert c.answer_0.quotes == [Quote(1, "Rayleigh scattering - Wikipedia (en.wikipedia.org)", "",
                                       "Rayleigh scattering is the scattering of light by particles smaller than its wavelength.")]
    assert c.answer_1.quotes == []
    # WebGPT's rule: 0 is a soft 50% label, any other score a hard label by its sign
    assert [x.label() for x in comps] == [1.0, 0.5, 0.0, 1.0]
    assert [x.label("graded") for x in comps] == [1.0, 0.5, 0.25, 1.0]
    with pytest.raises(DataError, match="row 5 duplicates row 1"):
        load_webgpt_rows(((f"row {i + 1}", r) for i, r in enumerate(ds)), "webgpt", strict=True)


def test_raw_jsonl_quote_form_and_round_trip():
    row = webgpt_row(0, 0.5)
    row["quotes_0"] = [{"title": "T", "extract": "E"}]
    c = from_webgpt_row(row, "line 1")
    assert [(q.title, q.text) for q in c.answer_0.quotes] == [("T", "E")]
    c.answer_0.quotes[0].url = "https://example.org/t"
    back = from_webgpt_row(to_webgpt_row(c), "line 1")
    assert back.answer_0 == c.answer_0 and back.answer_1 == c.answer_1 and back.score_0 == 0.5


def test_content_key_ignores_order_but_not_content():
    q = "q?"
    a, b = Answer(q, "x [1].", [Quote(1, "t", "u", "quote")]), Answer(q, "y")
    assert Comparison(q, a, b, 1.0).content_key() == Comparison(q, b, a, -1.0).content_key()
    assert Comparison(q, a, b, 1.0).content_key() != Comparison(q, a, Answer(q, "y."), 1.0).content_key()
    with pytest.raises(ValueError, match="unknown label mode"):
        Comparison(q, a, b, 1.0).label("nope")


def test_webgpt_by_name_offline_says_what_to_do():
    with pytest.raises(RuntimeError, match="local copy"):
        load_source("openai/webgpt_comparisons")


def test_hh_rlhf_adapter_on_the_shared_data():
    comps, stats = load_source("hh-rlhf:helpful-base")
    assert stats.rows == 1884
    assert stats.dropped.get("identical answers") == 2  # the published split holds two such pairs
    assert stats.kept == len(comps) == stats.rows - sum(stats.dropped.values())
    c = comps[0]
    assert c.question.startswith("Human: Do you know why turkeys became the official food of thanksgiving?")
    assert c.answer_0.text.startswith("To be honest, I don’t know anything about that.")
    assert c.answer_1.text.startswith("I know that the American Indians")
    assert "Assistant:" not in c.answer_0.text and c.score_0 == 1.0 and c.label() == 1.0
    with pytest.raises(ValueError, match="Unknown HH-RLHF split"):
        load_source("hh-rlhf:helpful")


def test_lfqa_adapter_direction():
    comps, stats = load_source("lfqa")
    assert stats.rows == 200 and len(comps) == 200
    first = comps[0]  # the experts preferred answer A ("Answer B is irrelevant"): overall_preference -1
    assert first.answer_0.text.startswith("Those clues are kind of vague")
    assert first.score_0 == 1.0
    assert "<br />" not in first.answer_0.text
    assert sorted({c.score_0 for c in comps}) == [-1.0, 1.0]


def test_gold_judge_rewards_the_right_answer_and_the_gold_sentences():
    record = read_hotpot_records(limit=1)[0]
    paras = dict((t, s) for t, s in record["context"])
    gold = [Quote(i + 1, t, "", paras[t][s]) for i, (t, s) in enumerate(record["supporting_facts"])]
    perfect = Answer(record["question"], f"{record['answer']} [1][2].", gold)
    distractor = next((t, s) for t, s in paras.items() if t not in {f[0] for f in record["supporting_facts"]})
    wrong = Answer(record["question"], "Nobody [1].", [Quote(1, distractor[0], "", distractor[1][0])])
    assert gold_score(perfect, record) == {"answer_f1": 1.0, "sp_recall": 1.0, "score": 1.0}
    assert gold_score(wrong, record)["score"] == 0.0
    score, _, _ = judge_pair(perfect, wrong, record)
    assert score == 1.0 and judge_pair(wrong, perfect, record)[0] == -1.0
    assert judge_pair(perfect, Answer(record["question"], perfect.text, list(gold)), record)[0] == 0.0


def test_synthetic_comparisons_are_deterministic_and_labelled_by_the_judge():
    records = read_hotpot_records(limit=20)
    a, b = synthetic_comparisons(records, seed=1), synthetic_comparisons(records, seed=1)
    assert [(c.answer_0, c.answer_1, c.score_0) for c in a] == [(c.answer_0, c.answer_1, c.score_0) for c in b]
    assert len(a) == 40
    for c in a:
        diff = c.meta["gold_0"]["score"] - c.meta["gold_1"]["score"]
        assert c.score_0 == pytest.approx(max(-1, min(1, diff)))
        assert c.answer_0 != c.answer_1
    labels = {c.label() for c in a}
    assert labels == {0.0, 0.5, 1.0}  # wins, losses and gold ties all occur


def test_records_without_an_id_get_a_group_each():
    """35 shared records have a null `_id` (a user's file may have more): grouped by the raw id,
    their pairs would share one group, so the held-out split could not separate them."""
    # the shared file's loader turns a null id into "None"; a user's dicts may hold None itself
    records = [dict(r, _id=None if i else "None") for i, r in enumerate(read_hotpot_records(limit=3))]
    comps = synthetic_comparisons(records)
    groups = {c.group for c in comps}
    assert len(groups) == 3 and "None" not in groups
    assert len({c.id for c in comps}) == len(comps)
    # a real id is kept as it is, so data made before this change keeps its groups
    first = read_hotpot_records(limit=1)[0]
    assert {c.group for c in synthetic_comparisons([first])} == {first["_id"]}


def test_synthetic_pairs_are_about_training_questions_only():
    """The first 30% of HotpotQA dev is what `citeagent eval` scores best-of-n on: a reward model
    must never have trained on pairs about those questions."""
    records = read_hotpot_records()
    train, held = hotpotqa_split(records)
    comps, _ = load_source("hotpotqa-synth")
    assert comps and not heldout_question_rows(comps, records)
    assert {c.question for c in comps} <= {r["question"] for r in train}
    first, _ = load_source("hotpotqa-synth:5")
    assert {c.question for c in first} == {r["question"] for r in train[:5]}
    # The check itself finds pairs about held-out questions among others.
    leaked = synthetic_comparisons(held[:3])
    assert heldout_question_rows(first + leaked, records) == leaked
    # The same question in other case and spacing is the same question (question_key).
    shouted = [replace(c, question="  " + c.question.upper().replace(" ", "   ")) for c in leaked]
    assert heldout_question_rows(first + shouted, records) == shouted


def test_heldout_split_is_by_question_and_stable():
    comps = load_sources("lfqa,hotpotqa-synth:50")
    for name, (cs, _) in comps.items():
        train, held = split_heldout(cs, 0.3, seed=0)
        assert len(train) + len(held) == len(cs) and held and train
        assert not {c.split_key() for c in train} & {c.split_key() for c in held}
        again, _ = split_heldout(cs, 0.3, seed=0)
        assert [c.id for c in again] == [c.id for c in train]
    with pytest.raises(ValueError, match="held-out fraction"):
        split_heldout([], 1.0)


def test_unknown_source_is_named():
    with pytest.raises(ValueError, match="Unknown preference source 'nope'"):
        load_source("nope")


def test_policy_samples_labelled_by_the_gold_judge(tmp_path):
    import json

    record = read_hotpot_records(limit=1)[0]
    title, sid = record["supporting_facts"][0]
    sentence = dict((t, s) for t, s in record["context"])[title][sid]
    good = {"question": record["question"], "text": f"{record['answer']} [1].",
            "quotes": [{"title": title, "url": "", "text": sentence}]}
    bad = {"question": record["question"], "text": "Nobody knows."}
    path = tmp_path / "samples.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in (good, bad, good)))
    comps, stats = load_source(f"hotpotqa-gold:{path}")
    assert len(comps) == 1 and stats.source == "hotpotqa-gold"  # the repeated sample makes no second pair
    assert comps[0].score_0 > 0 and comps[0].label() == 1.0
    # Some HotpotQA questions hold runs of spaces, which the browser collapses in the answer it writes.
    spaced = next(r for r in read_hotpot_records() if "  " in r["question"])
    shown = " ".join(spaced["question"].split())
    path.write_text("".join(json.dumps({"question": shown, "text": t}) + "\n" for t in ("Nobody.", spaced["answer"])))
    comps, _ = load_source(f"hotpotqa-gold:{path}")
    assert len(comps) == 1 and comps[0].group == str(spaced["_id"])
    path.write_text(json.dumps({**bad, "question": "Not a HotpotQA question?"}) + "\n")
    with pytest.raises(ValueError, match="not in the HotpotQA records"):
        load_source(f"hotpotqa-gold:{path}")


def test_exclude_questions_names_what_a_line_needs(tmp_path):
    """A file of bare questions is the likely mistake; the message says a line needs its answers too."""
    from citeagent.reward.sources import load_sources

    bare = tmp_path / "questions.jsonl"
    bare.write_text('{"question": "Who directed Alien?"}\n')
    with pytest.raises(ValueError, match=r'--exclude-questions: .*"question" and its "answers" \(a list\) on every line'):
        load_sources("lfqa", str(bare))
    bare.write_text('{"question": "Who directed Alien?", "answers": ["Ridley Scott"]}\n')
    assert "lfqa" in load_sources("lfqa", str(bare))
