"""Test-size arithmetic (citeagent/eval/power.py), checked by hand and against the bootstrap test
`--compare` runs, and scripts/sample_size.py on eval runs written here."""
import json
import subprocess
import sys

import numpy as np
import pytest

from citeagent.eval.bootstrap import paired_bootstrap_ci
from citeagent.eval.compare import compare_runs, format_comparison, paired_differences
from citeagent.eval.power import minimum_detectable_difference, power_at, questions_needed
from feedback_support import REPO

Z975, Z80, Z9875 = 1.959964, 0.841621, 2.241403  # normal quantiles, from tables


def test_by_hand():
    assert minimum_detectable_difference(1.0, 100) == pytest.approx((Z975 + Z80) / 10, abs=1e-5)
    assert minimum_detectable_difference(0.2, 400, alpha=0.025) == pytest.approx(
        (Z9875 + Z80) * 0.2 / 20, abs=1e-5)
    # (2.801585 / 0.28)^2 = 100.11 -> 101 questions; the sign of the difference does not matter
    assert questions_needed(1.0, 0.28) == questions_needed(1.0, -0.28) == 101
    assert power_at(1.0, (Z975 + Z80) / 10, 100) == pytest.approx(0.80, abs=1e-4)
    assert power_at(1.0, 0.0, 100) == pytest.approx(0.025, abs=1e-4)  # one tail of alpha
    for bad, match in [(lambda: questions_needed(1, 0.0), "delta=0"),
                       (lambda: minimum_detectable_difference(1, 50, alpha=5), "alpha=5"),
                       (lambda: questions_needed(1, 0.1, power=80), "power=80"),
                       (lambda: minimum_detectable_difference(1, 1), "n=1")]:
        with pytest.raises(ValueError, match=match):
            bad()


def test_the_bootstrap_test_finds_the_minimum_detectable_difference_four_times_in_five():
    """Paired data whose true mean difference is the MDE of 60 questions: `--compare`'s own
    bootstrap p-value falls below 0.05 in about 80% of simulated tests."""
    rng = np.random.default_rng(0)
    n, sd, sims = 60, 0.2, 300
    delta = minimum_detectable_difference(sd, n)
    hits = 0
    for k in range(sims):
        a = rng.uniform(0, 1, n)
        b = a + delta + rng.normal(0, sd, n)
        hits += paired_bootstrap_ci(a, b, n_resamples=500, seed=k)["p_value"] < 0.05
    # binomial sd at 300 tests is 0.023; the t-distribution's heavier tails at n=60 cost ~1 point
    assert 0.72 <= hits / sims <= 0.88, hits / sims


def _run(path, values: dict[str, float], metric="f1"):
    path.mkdir()
    (path / "records.jsonl").write_text("".join(
        json.dumps({"id": i, "metrics": {metric: v}}) + "\n" for i, v in values.items()))
    return str(path)


def test_compare_reports_the_minimum_detectable_difference(tmp_path):
    a = _run(tmp_path / "a", {"q1": 0.0, "q2": 0.5, "q3": 1.0, "q4": 0.0})
    b = _run(tmp_path / "b", {"q1": 1.0, "q2": 0.5, "q3": 1.0, "q4": 0.5, "q5": 1.0})
    assert paired_differences(a, b, "f1") == {"q1": 1.0, "q2": 0.0, "q3": 0.0, "q4": 0.5}
    d = compare_runs(a, b, n_resamples=100)["metrics"]["f1"]
    sd = float(np.std([1.0, 0.0, 0.0, 0.5], ddof=1))
    assert d["sd"] == pytest.approx(sd) and d["mde80"] == pytest.approx((Z975 + Z80) * sd / 2, abs=1e-5)
    assert "MDE80" in format_comparison(compare_runs(a, b, n_resamples=100))


def test_sample_size_script_pools_disjoint_tests(tmp_path):
    d1 = {"x1": 0.2, "x2": -0.1, "x3": 0.3}
    d2 = {"y1": 0.0, "y2": 0.4, "y3": -0.2, "y4": 0.1}
    args = []
    for name, d in [("one", d1), ("two", d2)]:
        args += ["--test", name, _run(tmp_path / f"{name}_a", dict.fromkeys(d, 0.3)),
                 _run(tmp_path / f"{name}_b", {k: 0.3 + v for k, v in d.items()})]
    cmd = [sys.executable, "scripts/sample_size.py", *args, "--metric", "f1", "--alpha", "0.05", "--planned", "50"]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=120)
    assert r.returncode == 0, r.stderr
    f1 = json.loads(r.stdout)["metrics"]["f1"]
    assert [(t["test"], t["n"]) for t in f1["tests"]] == [("one", 3), ("two", 4)]
    pooled = np.array(list(d1.values()) + list(d2.values()))
    mean, sd = pooled.mean(), pooled.std(ddof=1)
    assert f1["pooled"]["mean"] == pytest.approx(mean, abs=1e-4) and f1["pooled"]["sd"] == pytest.approx(sd, abs=1e-4)
    assert f1["pooled"]["questions_needed"] == int(np.ceil(((Z975 + Z80) * sd / mean) ** 2))
    assert f1["pooled"]["power_at_planned"] == pytest.approx(power_at(sd, mean, 50), abs=1e-3)

    # B worse than A: no size of test shows B > A
    neg = cmd[:2] + ["--test", "neg", args[3], args[2]] + cmd[-6:]
    r = subprocess.run(neg, capture_output=True, text=True, cwd=REPO, timeout=120)
    assert r.returncode == 0 and json.loads(r.stdout)["metrics"]["f1"]["pooled"]["questions_needed"] is None

    # the same questions twice would count them twice
    r = subprocess.run(cmd[:2] + args[:4] + ["--test", "again", args[2], args[3]], capture_output=True, text=True,
                       cwd=REPO, timeout=120)
    assert r.returncode == 2 and "share 3 question(s)" in r.stderr
    r = subprocess.run(cmd[:2] + ["--test", "gone", str(tmp_path / "nope"), args[3]], capture_output=True,
                       text=True, cwd=REPO, timeout=120)
    assert r.returncode == 2 and "No evaluation records" in r.stderr
    r = subprocess.run(cmd[:2] + args[:4] + ["--metric", "sp_f1"], capture_output=True, text=True, cwd=REPO,
                       timeout=120)
    assert r.returncode == 2 and "0 question(s) with 'sp_f1'" in r.stderr
