"""Bootstrap intervals, the decline curve and the summary, against values worked out by hand."""
import pytest

from citeagent.eval.bootstrap import bootstrap_ci, paired_bootstrap_ci
from citeagent.eval.decline import decline_curve
from citeagent.eval.summary import summarize


def test_bootstrap_constant_and_empty():
    assert bootstrap_ci([0.7] * 10) == {"mean": 0.7, "ci_low": pytest.approx(0.7), "ci_high": pytest.approx(0.7), "n": 10}
    assert bootstrap_ci([]) is None
    assert bootstrap_ci([None, None]) is None
    assert bootstrap_ci([1.0, None, 0.0])["n"] == 2  # None is "not measured", not a zero


def test_bootstrap_matches_normal_approximation():
    # 200 ones and 200 zeros: mean .5, standard error sqrt(.25/400) = .025, so the 95% interval
    # is about .5 -+ 1.96 * .025 = [.451, .549]
    ci = bootstrap_ci([1.0] * 200 + [0.0] * 200, n_resamples=4000, seed=1)
    assert ci["mean"] == 0.5
    assert ci["ci_low"] == pytest.approx(0.451, abs=0.01)
    assert ci["ci_high"] == pytest.approx(0.549, abs=0.01)


def test_bootstrap_is_reproducible_and_narrows_with_n():
    vals = [0, 1, 1, 0, 1, 1, 1, 0, 1, 1]
    assert bootstrap_ci(vals, seed=3) == bootstrap_ci(vals, seed=3)
    small = bootstrap_ci(vals)
    big = bootstrap_ci(vals * 20)
    assert (big["ci_high"] - big["ci_low"]) < (small["ci_high"] - small["ci_low"])


def test_paired_bootstrap():
    a = [0.0, 1.0, 0.5, 0.25]
    same = paired_bootstrap_ci(a, a)
    assert (same["mean"], same["ci_low"], same["ci_high"], same["p_value"]) == (0.0, 0.0, 0.0, 1.0)
    up = paired_bootstrap_ci(a, [x + 1 for x in a])
    assert up["mean"] == 1.0 and up["ci_low"] == pytest.approx(1.0) and up["p_value"] == 0.0
    assert up["mean_a"] == pytest.approx(0.4375) and up["mean_b"] == pytest.approx(1.4375)
    # pairs with a missing side are dropped: only (1,0) and (0,1) remain -> mean diff 0
    d = paired_bootstrap_ci([1.0, None, 0.0], [0.0, 1.0, 1.0])
    assert d["n"] == 2 and d["mean"] == 0.0
    # a question effect shared by both runs cancels: differences are all exactly .1
    base = [0.0, 0.9, 0.2, 0.8, 0.1, 0.7]
    tight = paired_bootstrap_ci(base, [x + 0.1 for x in base])
    assert tight["ci_high"] - tight["ci_low"] == pytest.approx(0.0, abs=1e-9)


def _rec(score, correct, supported, answered=1.0):
    return {"score": score, "metrics": {"answered": answered, "correct": correct, "f1": correct,
                                        "supported": supported,
                                        "supported_and_plausible": None if supported is None else correct * supported}}


def test_decline_curve_by_hand():
    recs = [_rec(0.9, 1.0, 1.0), _rec(0.1, 0.0, 0.0), _rec(0.5, 1.0, 0.0), _rec(0.7, 0.0, 1.0),
            _rec(None, 0.0, None, answered=0.0)]  # the policy declined this one itself
    curve = decline_curve(recs, "score", points=4)
    # 4 answered of 5; ranked by score: .9(c1,s1) .7(c0,s1) .5(c1,s0) .1(c0,s0)
    # points at k = 1, 2, 3, 4 answered
    assert [p["n_answered"] for p in curve] == [1, 2, 3, 4]
    assert [p["coverage"] for p in curve] == [0.2, 0.4, 0.6, 0.8]
    assert [p["correct"] for p in curve] == [1.0, 0.5, pytest.approx(2 / 3), 0.5]
    assert [p["supported"] for p in curve] == [1.0, 1.0, pytest.approx(2 / 3), 0.5]
    assert [p["supported_and_plausible"] for p in curve] == [1.0, 0.5, pytest.approx(1 / 3), 0.25]
    assert [p["min_score"] for p in curve] == [0.9, 0.7, 0.5, 0.1]


def test_decline_curve_needs_scores():
    assert decline_curve([_rec(None, 1.0, 1.0)]) is None
    assert decline_curve([]) is None


def test_summary_counts_and_means():
    recs = [
        {"metrics": {"answered": 1.0, "em": 1.0, "n_quotes": 2}, "quote_checks": [{"verbatim": True}, {"verbatim": False}],
         "reasons": ["quote [2] is not verbatim in u"], "score": 1.0},
        {"metrics": {"answered": 1.0, "em": 0.0, "n_quotes": 1}, "quote_checks": [{"verbatim": True}],
         "reasons": ["quote [1] cites a document not in the corpus (url='x')"], "error": None, "score": 0.5},
        {"metrics": {"answered": 0.0, "em": 0.0}, "reasons": ["malformed prediction, line 3: not JSON"],
         "error": "malformed prediction, line 3: not JSON", "score": None},
    ]
    s = summarize(recs, n_resamples=200)
    assert s["n_questions"] == 3
    assert s["metrics"]["em"]["mean"] == pytest.approx(1 / 3)
    assert s["metrics"]["answered"]["mean"] == pytest.approx(2 / 3)
    assert "f1" not in s["metrics"]  # measured nowhere -> not reported
    assert (s["quotes_total"], s["quotes_verbatim_total"], s["quote_verbatim_rate_micro"]) == (3, 2, pytest.approx(2 / 3))
    assert s["n_bad_records"] == 1
    assert s["failure_reasons"] == {"not verbatim": 1, "not in the corpus": 1, "malformed": 1}
    assert [p["n_answered"] for p in s["decline_curves"]["policy"]] == [1, 2]
