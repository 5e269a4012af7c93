"""Every metric against cases worked out by hand."""

import pytest

from citeagent.answer import Answer, Quote
from citeagent.eval import answer_metrics as am
from citeagent.eval.citation_metrics import alce_citation_metrics, gophercite_supported
from citeagent.eval.evidence_metrics import (
    joint_metrics, normalize_url, page_evidence_metrics, quoted_sentences, same_page, supporting_fact_metrics,
)
from citeagent.eval.quote_metrics import check_quotes, corpus_lookup, locate, normalized_with_offsets, quote_metrics
from citeenv.corpus import Corpus
from citeenv.documents import Document


# --- answer metrics ------------------------------------------------------------------------

def test_normalize_answer_is_squad_normalisation():
    assert am.normalize_answer("The  Cat, sat!") == "cat sat"
    # punctuation goes first, so a hyphenated article is glued rather than dropped
    assert am.normalize_answer("the-end") == "theend"
    assert am.normalize_answer("An apple a day") == "apple day"
    assert am.normalize_answer("Theater") == "theater"  # articles only as whole words


def test_exact_match_and_best_over_answers():
    assert am.exact_match("the Eiffel Tower.", "Eiffel tower") == 1.0
    assert am.exact_match("Eiffel", "Eiffel Tower") == 0.0
    assert am.best_exact_match("Paris", ["London", "paris"]) == 1.0
    assert am.best_exact_match("Paris", []) == 0.0


def test_token_f1_by_hand():
    # pred tokens: [barack, obama, was, president] gold: [obama] -> p=1/4 r=1 f1=2*.25/1.25=0.4
    f1, p, r = am.token_prf("Barack Obama was president", "Obama")
    assert (p, r) == (0.25, 1.0)
    assert f1 == pytest.approx(0.4)
    # repeated tokens count by multiset: pred [a1,a1,b] (after normalisation "x x y"), gold "x y y"
    # common = min(2,1)[x] + min(1,2)[y] = 2 -> p=2/3 r=2/3 f1=2/3
    assert am.token_f1("x x y", "x y y") == pytest.approx(2 / 3)
    assert am.token_f1("", "x") == 0.0
    assert am.token_f1("the", "a") == 1.0  # both normalise to empty
    assert am.best_token_f1("Barack Obama", ["Michelle", "Obama"]) == pytest.approx(2 / 3)


def test_hotpot_answer_prf_yes_no_rule():
    assert am.hotpot_answer_prf("yes", "yes") == (1.0, 1.0, 1.0)
    # SQuAD F1 would give "no it is not" vs "no" 0.4; HotpotQA gives 0 because gold is "no"
    assert am.token_f1("no it is not", "no") == pytest.approx(0.4)
    assert am.hotpot_answer_prf("no it is not", "no") == (0.0, 0.0, 0.0)
    assert am.hotpot_answer_prf("yes", "Tim Burton") == (0.0, 0.0, 0.0)
    f1, p, r = am.hotpot_answer_prf("director Tim Burton", "Tim Burton")
    assert (p, r) == (2 / 3, 1.0) and f1 == pytest.approx(0.8)


def test_contains_answer_whole_words():
    assert am.contains_answer("Yes, both were American [1].", ["yes"]) == 1.0
    assert am.contains_answer("It is not.", ["no"]) == 0.0
    assert am.contains_answer("It is not.", ["no"], whole_words=False) == 1.0  # ALCE's substring test
    assert am.contains_answer("", ["x"]) == 0.0


def test_asqa_str_em():
    groups = [["Ali Daei", "Daei"], ["Josef Bican"], ["Christine Sinclair", "Sinclair"]]
    pred = "Ali Daei leads men's internationals; Sinclair leads women's."
    assert am.asqa_str_em(pred, groups) == pytest.approx(2 / 3)
    assert am.asqa_str_em(pred, []) == 0.0


# --- quotes ----------------------------------------------------------------------------------

PAGE = "Alpha beta.  Gamma\n delta epsilon. Zeta eta."


def _corpus():
    docs = [
        Document("Alpha", "Alpha", "https://en.wikipedia.org/wiki/Alpha", PAGE,
                 meta={"sentences": [[0, 11], [11, 32], [32, 42]]}),
        Document("Other", "Other", "https://en.wikipedia.org/wiki/Other", "Only one sentence here.",
                 meta={"sentences": [[0, 23]]}),
    ]
    return Corpus(docs, name="test")


def test_normalized_offsets_and_locate():
    norm, offs = normalized_with_offsets("  a \n b ")
    assert norm == "a b" and offs == [2, 3, 6]
    # "Gamma delta" spans the original's "Gamma\n delta", chars 13..25
    assert locate("Gamma delta", PAGE) == (13, 25)
    assert PAGE[13:25] == "Gamma\n delta"
    assert locate("gamma delta", PAGE) is None  # case matters: quotes are verbatim
    assert locate("x. x", "x. x. x") == (0, 4)
    assert locate("x. x", "x. x. x", hint=(3, 7)) == (3, 7)


def test_quote_metrics_verbatim_missing_doc_and_dangling():
    lookup = corpus_lookup(_corpus())
    ans = Answer("q", "Beta and delta [1][2]. Also [4].", [
        Quote(1, "Alpha", "https://en.wikipedia.org/wiki/Alpha", "Alpha beta."),
        Quote(2, "Alpha", "https://en.wikipedia.org/wiki/Alpha", "Gamma delta", doc_id="Alpha"),
        Quote(3, "Nowhere", "https://example.org/x", "made up"),
        Quote(5, "Other", "https://en.wikipedia.org/wiki/Other", "not on the page"),
    ])
    checks = check_quotes(ans, lookup)
    assert [c.verbatim for c in checks] == [True, True, False, False]
    m, reasons = quote_metrics(ans, checks)
    assert m["quote_verbatim_rate"] == 0.5
    assert m["all_quotes_verbatim"] == 0.0
    assert m["n_dangling_markers"] == 1 and m["has_dangling_markers"] == 1.0
    assert m["cited_statement_rate"] == 1.0  # both statements cite something (one cites nothing real)
    assert any("not in the corpus" in r for r in reasons)
    assert any("not verbatim" in r for r in reasons)
    assert any("[4]" in r for r in reasons)


def test_quote_metrics_no_quotes_is_not_applicable():
    m, _ = quote_metrics(Answer("q", "Just text."), [])
    assert m["quote_verbatim_rate"] is None and m["n_quotes"] == 0 and m["cited_statement_rate"] == 0.0


# --- gold evidence ----------------------------------------------------------------------------

def test_quoted_sentences_maps_spans_to_sentence_ids():
    lookup = corpus_lookup(_corpus())
    ans = Answer("q", "x [1]", [
        Quote(1, "Alpha", "https://en.wikipedia.org/wiki/Alpha", "beta. Gamma"),  # crosses sentences 0 and 1
        Quote(2, "Alpha", "", "Zeta eta.", doc_id="Alpha"),  # sentence 2
        Quote(3, "Other", "https://en.wikipedia.org/wiki/Other", "one sentence"),
    ])
    assert quoted_sentences(check_quotes(ans, lookup)) == {("Alpha", 0), ("Alpha", 1), ("Alpha", 2), ("Other", 0)}


def test_supporting_fact_metrics_official_definition():
    gold = {("A", 0), ("B", 1)}
    # predicted {A0, A1}: tp=1 fp=1 fn=1 -> p=.5 r=.5 f1=.5 em=0
    assert supporting_fact_metrics({("A", 0), ("A", 1)}, gold) == {"sp_em": 0.0, "sp_precision": 0.5, "sp_recall": 0.5, "sp_f1": 0.5}
    assert supporting_fact_metrics(set(gold), gold) == {"sp_em": 1.0, "sp_precision": 1.0, "sp_recall": 1.0, "sp_f1": 1.0}
    # nothing predicted: the official script gives precision 0, recall 0, F1 0
    assert supporting_fact_metrics(set(), gold) == {"sp_em": 0.0, "sp_precision": 0.0, "sp_recall": 0.0, "sp_f1": 0.0}
    # superset: tp=2 fp=1 -> p=2/3 r=1 f1=.8
    m = supporting_fact_metrics(gold | {("C", 3)}, gold)
    assert m["sp_precision"] == pytest.approx(2 / 3) and m["sp_recall"] == 1.0 and m["sp_f1"] == pytest.approx(0.8)


def test_joint_metrics_official_definition():
    sp = {"sp_em": 0.0, "sp_precision": 2 / 3, "sp_recall": 1.0, "sp_f1": 0.8}
    # answer p=.5 r=1 -> joint p=1/3, r=1, f1 = 2*(1/3)/(4/3) = .5 ; joint em = 1*0
    j = joint_metrics(1.0, 0.5, 1.0, sp)
    assert j["joint_precision"] == pytest.approx(1 / 3) and j["joint_recall"] == 1.0
    assert j["joint_f1"] == pytest.approx(0.5) and j["joint_em"] == 0.0
    assert joint_metrics(1.0, 1.0, 1.0, {"sp_em": 1.0, "sp_precision": 1.0, "sp_recall": 1.0})["joint_em"] == 1.0
    assert joint_metrics(0.0, 0.0, 0.0, sp)["joint_f1"] == 0.0


def test_page_evidence_metrics():
    lookup = corpus_lookup(_corpus())
    ans = Answer("q", "x [1]", [
        Quote(1, "Alpha", "https://en.wikipedia.org/wiki/Alpha", "Alpha beta."),
        Quote(2, "Other", "https://en.wikipedia.org/wiki/Other", "one sentence"),
        Quote(3, "Alpha", "https://en.wikipedia.org/wiki/Alpha#frag", "Zeta eta."),
    ])
    gold = ["http://en.wikipedia.org/wiki/Alpha/", "https://en.wikipedia.org/wiki/Gamma"]
    m = page_evidence_metrics(check_quotes(ans, lookup), gold)
    assert m["evidence_page_precision"] == pytest.approx(2 / 3)  # quotes 1 and 3 are from Alpha
    assert m["evidence_page_recall"] == 0.5  # Alpha quoted, Gamma not
    assert page_evidence_metrics([], gold) == {"evidence_page_precision": 0.0, "evidence_page_recall": 0.0}
    assert normalize_url("http://x.org/a/#b") == "https://x.org/a#b"
    assert normalize_url("http://x.org/a/#b", keep_fragment=False) == "https://x.org/a"


def test_same_page_keeps_fragment_identity_of_topics():
    topics = "https://docs.python.org/3/reference/topics.html#"
    assert same_page(topics + "assert", topics + "assert")
    assert not same_page(topics + "assert", topics + "for")  # two pydocs documents
    assert same_page("https://docs.python.org/3/library/json.html", "https://docs.python.org/3/library/json.html#json.dumps")
    assert not same_page("https://docs.python.org/3/library/json.html", "https://docs.python.org/3/library/re.html")


# --- ALCE citation recall / precision ----------------------------------------------------------

class KeywordJudge:
    """A transparent stand-in judge for the metric logic: the premise supports the claim when it
    contains every capitalised keyword of the claim's answer part. Hand-computable by design."""

    name = "keywords"
    threshold = 0.5
    meta = {}

    def __init__(self):
        self.calls = []

    def support_probs(self, pairs):
        out = []
        for premise, claim in pairs:
            self.calls.append((premise, claim))
            answer = claim.split("Answer:", 1)[1]
            keys = [w.strip(".,") for w in answer.split() if w[:1].isupper()]
            out.append(1.0 if keys and all(k in premise for k in keys) else 0.0)
        return out


def _q(n, text):
    return Quote(n, f"T{n}", f"u{n}", text)


def test_alce_recall_and_precision_by_hand():
    quotes = [_q(1, "Paris is big"), _q(2, "London and Rome"), _q(3, "Rome is old"), _q(4, "nothing")]
    text = ("Paris matters [1]. "          # s1: supported by [1]; 1 citation, needed -> 1/1
            "London meets Rome [2][3]. "   # s2: joint supported; [2] alone supports -> needed; [3] alone no,
                                          #     rest {2} supports -> [3] not needed -> 1/2
            "Berlin too [4]. "              # s3: unsupported -> its citation imprecise 0/1
            "Oslo is cold.")                # s4: no citation -> unsupported
    ans = Answer("q?", text, quotes)
    m, verdicts, reasons = alce_citation_metrics("q?", ans, KeywordJudge())
    assert [v.supported for v in verdicts] == [True, True, False, False]
    assert [v.needed for v in verdicts] == [[True], [True, False], [False], []]
    assert m["citation_recall"] == pytest.approx(2 / 4)
    assert m["citation_precision"] == pytest.approx(2 / 4)  # needed citations 2 of 4
    assert any("cites nothing" in r for r in reasons)


def test_alce_both_citations_needed_and_cap():
    quotes = [_q(1, "London"), _q(2, "Rome"), _q(3, "London Rome"), _q(4, "x")]
    # [1] alone fails, rest {2} fails -> needed; same for [2]: precision 2/2, recall 1
    m, v, _ = alce_citation_metrics("q", Answer("q", "London and Rome [1][2].", quotes), KeywordJudge())
    assert (m["citation_recall"], m["citation_precision"]) == (1.0, 1.0)
    # ALCE reads 3 citations at most: [4] is dropped; [3] alone supports, [1],[2] alone fail and
    # are not needed given [3]: precision 1/3
    m, v, _ = alce_citation_metrics("q", Answer("q", "London and Rome [1][2][3][4].", quotes), KeywordJudge())
    assert v[0].citations == [1, 2, 3]
    assert m["citation_precision"] == pytest.approx(1 / 3) and m["citation_recall"] == 1.0


def test_alce_dangling_marker_and_empty_answer():
    quotes = [_q(1, "Paris")]
    m, v, reasons = alce_citation_metrics("q", Answer("q", "Paris [1][7].", quotes), KeywordJudge())
    # the statement cites a missing quote: unsupported, and both of its citations are imprecise
    assert (m["citation_recall"], m["citation_precision"]) == (0.0, 0.0)
    assert "missing" in v[0].reason
    m, v, reasons = alce_citation_metrics("q", Answer("q", "  ", quotes), KeywordJudge())
    assert m == {"citation_recall": 0.0, "citation_precision": 0.0} and "empty" in reasons[0]


def test_gophercite_supported():
    quotes = [_q(1, "Paris is in France"), _q(2, "unrelated")]
    assert gophercite_supported("q", Answer("q", "Paris [1].", quotes), KeywordJudge())[0] == 1.0
    assert gophercite_supported("q", Answer("q", "Paris [2].", quotes), KeywordJudge())[0] == 0.0
    # no markers: all quotes are the evidence (GopherCite's one-answer-one-quote form)
    assert gophercite_supported("q", Answer("q", "Paris.", quotes), KeywordJudge())[0] == 1.0
    assert gophercite_supported("q", Answer("q", "Paris [9].", quotes), KeywordJudge())[0] == 0.0
    assert gophercite_supported("q", Answer("q", "", quotes), KeywordJudge())[2] == "empty answer"
