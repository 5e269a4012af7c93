"""Candidate answers (citeagent.policies.spans) against values computed by hand: every span is
verbatim from its quote and cites it, comparison options and yes/no are offered, features pair
question and span kinds."""
import numpy as np

from citeagent.policies.spans import (N_SPAN_FEATURES, QTYPES, STYPES, answer_candidates, format_answer,
                                      question_options, question_type, span_features)
from tests.test_cpu_policy import WordEncoder

QUOTES = [{"n": 1, "text": "Arthur's Magazine (1844–1846) was an American literary periodical published in Philadelphia."},
          {"n": 2, "text": "First for Women is a woman's magazine published by Bauer Media Group in the USA."}]


def test_question_kinds_and_options_by_hand():
    q = "Which magazine was started first, Arthur's Magazine or First for Women?"
    assert question_options(q) == ["Arthur's Magazine", "First for Women"]
    assert question_type(q) == "option"
    assert question_options("Between Amazing Stories and Aquarium Fish International, which magazine is older?") == [
        "Amazing Stories", "Aquarium Fish International"]
    assert question_options("Which singer is at Capitol Records: Nate Albert or Rod Stewart?") == ["Nate Albert", "Rod Stewart"]
    assert question_type("Were Scott Derrickson and Ed Wood of the same nationality?") == "yes/no"
    assert question_options("Were Scott Derrickson and Ed Wood of the same nationality?") == []
    assert question_type("How many members does the band have?") == "how many"
    assert question_type("In what year was it founded?") == "what"
    assert question_type("Who directed Ed Wood?") == "who"


def test_spans_are_verbatim_and_cite_their_quote():
    cands = answer_candidates("Where was the magazine published?", QUOTES)
    by_text = {c.text: c for c in cands}
    for c in cands:
        if c.quote > 0:
            quote = QUOTES[c.quote - 1]["text"]
            assert quote[c.start:c.start + len(c.text)] == c.text and c.cites == [c.quote]
    assert by_text["Philadelphia"].kind == "name" and by_text["Philadelphia"].cites == [1]
    assert by_text["1844"].kind == "year"
    assert by_text["Bauer Media Group"].cites == [2] and by_text["Bauer Media Group"].kind == "name"
    assert "American literary periodical" in by_text
    assert "magazine" not in by_text  # the question already says it
    assert "yes" not in by_text  # not a yes/no question
    assert len({c.text.lower() for c in cands}) == len(cands)  # deduplicated


def test_options_and_yes_no_cite_by_hand():
    cands = answer_candidates("Which magazine was started first, Arthur's Magazine or First for Women?", QUOTES)
    assert [(c.text, c.kind, c.cites) for c in cands[:4]] == [
        ("Arthur's Magazine", "option", [1]), ("First for Women", "option", [2]), ("yes", "yes", [1, 2]),
        ("no", "no", [1, 2])]
    assert format_answer(cands[0]) == "Arthur's Magazine [1]"
    assert format_answer(cands[2]) == "yes [1][2]"
    assert answer_candidates("Who?", []) == []


def test_features_by_hand():
    q = "Where was the magazine published?"
    cands = answer_candidates(q, QUOTES)
    enc = WordEncoder()
    f = span_features(q, QUOTES, cands, enc.encode)
    assert f.shape == (len(cands), N_SPAN_FEATURES)
    j = [c.text for c in cands].index("Philadelphia")
    assert f[j, QTYPES.index("where") * len(STYPES) + STYPES.index("name")] == 1
    assert f[j, : len(QTYPES) * len(STYPES)].sum() == 1
    o = len(QTYPES) * len(STYPES)
    qv, cv, sv = enc.encode([q, "Philadelphia", QUOTES[0]["text"]])
    assert f[j, o] == np.float32(qv @ cv) and abs(f[j, o + 1] - float(qv @ sv)) < 1e-6
    assert f[j, o + 2] == 0  # no word of "Philadelphia" is in the question
    assert f[j, o + 9] == 1 / 3  # "published" right before it is a question word
