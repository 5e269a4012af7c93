"""Candidate answers (citeagent.policies.spans) against values computed by hand: every span is
verbatim from its quote and cites it, comparison options and yes/no are offered, features pair
question and span kinds."""
import numpy as np

from citeagent.policies.candidate import CandidatePolicyConfig, answer_form_for
from citeagent.policies.spans import (N_SPAN_FEATURES, QTYPES, STYPES, AnswerCandidate, answer_candidates, format_answer,
                                      question_options, question_type, sentence_of, span_features)
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


DOC = [{"n": 1, "text": "Return a list of the words in the string, using sep as the delimiter string."},
       {"n": 2, "text": "The else clause runs if the expression is false, and __len__() is called; "
                        "pow(2,n) binds more tightly than unary operators."}]


def test_code_names_phrases_and_clauses_by_hand():
    cands = answer_candidates("What does str.split() return?", DOC)
    kinds = {c.text: c.kind for c in cands}
    for c in cands:  # still verbatim from the quote they cite
        assert DOC[c.quote - 1]["text"][c.start:c.start + len(c.text)] == c.text and c.cites == [c.quote]
    assert kinds["__len__"] == "code" and kinds["pow(2,n)"] == "code"
    assert kinds["a list of the words in the string"] == "clause"  # what "Return" returns
    assert kinds["if the expression is false"] == "clause"  # a condition, to its piece's end
    assert kinds["The else clause runs if the expression is false"] == "clause"
    assert kinds["more tightly"] == "phrase"  # a comparative may open a short phrase
    assert "more" not in kinds and "the" not in kinds
    assert "using sep as the delimiter string" in kinds


def test_a_long_or_clause_is_not_a_pair_of_options():
    assert question_options("Which base64 function decodes the base32 encoded bytes-like object or ASCII string s?") == []


def test_reader_proposals_join_the_candidates_and_are_scored_by_hand():
    import math

    from citeagent.policies.reader import AnswerCandidate as Proposal

    q = "Where was the magazine published?"
    proposed = [Proposal("Philadelphia", math.log(0.5), [1], "span"),
                Proposal("woman's magazine published by Bauer", math.log(0.25), [2], "span"),  # not enumerated
                Proposal("Bauer Media", math.log(0.125), [1], "span"),  # not in the quote it cites: refused
                Proposal("yes", math.log(0.0625), [1, 2], "yes")]
    plain = answer_candidates(q, QUOTES)
    cands = answer_candidates(q, QUOTES, proposed=proposed)
    assert [c.text for c in cands[:len(plain)]] == [c.text for c in plain]
    added = cands[len(plain):]
    assert [(c.text, c.cites, c.start) for c in added] == [
        ("woman's magazine published by Bauer", [2], QUOTES[1]["text"].index("woman's"))]
    f = span_features(q, QUOTES, cands, WordEncoder().encode, proposed)
    o = len(QTYPES) * len(STYPES)
    texts = [c.text for c in cands]
    assert abs(f[texts.index("Philadelphia"), o + 12] - 0.5) < 1e-6 and f[texts.index("Philadelphia"), o + 13] == 1
    assert abs(f[-1, o + 12] - 0.25) < 1e-6 and f[-1, o + 13] == 0.5
    assert f[texts.index("1844"), o + 12] == 0 and f[texts.index("1844"), o + 13] == 0


SPLIT_DOC = [{"n": 3, "text": "str.split(sep=None, maxsplit=-1)\n\nReturn a list of the words in the string, using sep as the "
                        "delimiter string. If maxsplit is given, at most maxsplit splits are done."}]


def test_sentence_form_answers_with_the_sentence_that_holds_the_span_by_hand():
    text = SPLIT_DOC[0]["text"]
    span = AnswerCandidate("a list of the words", "clause", [3], 3, text.index("a list"))
    assert sentence_of(span, SPLIT_DOC) == "Return a list of the words in the string, using sep as the delimiter string."
    assert format_answer(span, "sentence", SPLIT_DOC) == ("Return a list of the words in the string, using sep as the "
                                                    "delimiter string. [3]")
    assert format_answer(span, "span", SPLIT_DOC) == "a list of the words [3]"
    sig = AnswerCandidate("maxsplit=-1", "code", [3], 3, text.index("maxsplit=-1"))
    assert sentence_of(sig, SPLIT_DOC) == "str.split(sep=None, maxsplit=-1)"  # a paragraph break ends a sentence
    last = AnswerCandidate("at most maxsplit splits", "phrase", [3], 3, text.index("at most"))
    assert sentence_of(last, SPLIT_DOC) == "If maxsplit is given, at most maxsplit splits are done."
    assert format_answer(AnswerCandidate("yes", "yes", [3]), "sentence", SPLIT_DOC) == "yes [3]"  # not a span


def test_text_that_reads_as_a_citation_marker_is_not_one():
    quotes = [{"n": 1, "text": "The dictionary errno.errorcode maps codes to names, e.g., errno.errorcode[2] is ENOENT."}]
    span = AnswerCandidate("ENOENT", "name", [1], 1, quotes[0]["text"].index("ENOENT"))
    assert format_answer(span, "sentence", quotes) == ("The dictionary errno.errorcode maps codes to names, e.g., "
                                                       "errno.errorcode[ 2] is ENOENT. [1]")


def test_a_long_sentence_is_cut_to_the_piece_that_holds_the_span():
    long = "The value, " + "which is " * 40 + "rarely needed, defaults to 1000; see the notes."
    quotes = [{"n": 1, "text": long}]
    span = AnswerCandidate("1000", "number", [1], 1, long.index("1000"))
    assert len(long) > 300 and sentence_of(span, quotes) == "defaults to 1000"


def test_answer_form_follows_the_corpus_and_is_checked():
    assert answer_form_for("hotpotqa") == answer_form_for("hotpotqa:5a8b57f25542995d1e6f1371") == "span"
    assert answer_form_for("pydocs") == answer_form_for(None) == answer_form_for("docs.jsonl") == "sentence"
    try:
        CandidatePolicyConfig(answer_form="paragraph")
    except ValueError as e:
        assert "span, sentence" in str(e)
    else:
        raise AssertionError("a bad answer form was accepted")
