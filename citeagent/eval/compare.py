"""`citeagent eval --compare RUN_A RUN_B`: per-metric paired differences (B - A) over the
questions both runs answered, with paired-bootstrap 95% intervals and the smallest difference a
test of this size would have found (so "no difference shown" can be read as "none this large")."""
from __future__ import annotations

import json
from pathlib import Path

from citeagent.eval.bootstrap import paired_bootstrap_ci
from citeagent.eval.power import minimum_detectable_difference
from citeagent.eval.runner import RECORDS, read_records
from citeagent.eval.summary import ALL_METRICS


def _records(run: str | Path) -> dict[str, dict]:
    path = Path(run)
    path = path / RECORDS if path.is_dir() else path
    if not path.is_file():
        raise FileNotFoundError(f"No evaluation records at {path}: give a run directory made by `citeagent eval`.")
    return {r["id"]: r for r in read_records(path) if not r.get("unscored")}


def paired_differences(run_a: str | Path, run_b: str | Path, metric: str) -> dict[str, float]:
    """B - A in `metric` for each question both runs measured it on, by question id."""
    a, b = _records(run_a), _records(run_b)
    out = {}
    for i in [i for i in a if i in b]:
        xa, xb = a[i]["metrics"].get(metric), b[i]["metrics"].get(metric)
        if xa is not None and xb is not None:
            out[i] = float(xb) - float(xa)
    return out


def compare_runs(run_a: str | Path, run_b: str | Path, n_resamples: int = 1000, seed: int = 0) -> dict:
    a, b = _records(run_a), _records(run_b)
    shared = [i for i in a if i in b]
    if not shared:
        raise ValueError(f"{run_a} and {run_b} have no question in common: were they run on the same data set?")
    diffs = {}
    for m in ALL_METRICS:
        xa = [a[i]["metrics"].get(m) for i in shared]
        xb = [b[i]["metrics"].get(m) for i in shared]
        ci = paired_bootstrap_ci(xa, xb, n_resamples=n_resamples, seed=seed)
        if ci is not None:
            # At the interval's own level, 80% power: a true difference this large shows as "*"
            # in four tests of five.
            ci["mde80"] = minimum_detectable_difference(ci["sd"], ci["n"]) if ci["n"] > 1 else None
            diffs[m] = ci
    return {"run_a": str(run_a), "run_b": str(run_b), "n_shared": len(shared), "only_a": len(a) - len(shared),
            "only_b": len(b) - len(shared), "metrics": diffs}


def _num(x: float | None) -> str:
    return f"{x:7.3f}" if x is not None else f"{'-':>7s}"


def format_comparison(cmp: dict) -> str:
    lines = [f"A = {cmp['run_a']}", f"B = {cmp['run_b']}",
             f"{cmp['n_shared']} questions in both (only in A: {cmp['only_a']}, only in B: {cmp['only_b']})", "",
             f"{'metric':28s} {'A':>8s} {'B':>8s} {'B-A':>8s}  {'95% CI':>20s} {'p':>6s} {'MDE80':>7s}  n"]
    for m, d in cmp["metrics"].items():
        sig = "*" if d["ci_low"] > 0 or d["ci_high"] < 0 else " "
        lines.append(f"{m:28s} {d['mean_a']:8.3f} {d['mean_b']:8.3f} {d['mean']:+8.3f}{sig} "
                     f"[{d['ci_low']:+.3f}, {d['ci_high']:+.3f}] {d['p_value']:6.3f} {_num(d.get('mde80'))}  {d['n']}")
    lines.append("* the interval excludes 0")
    lines.append("MDE80: the smallest true difference this many questions find with 80% power (two-sided 0.05)")
    return "\n".join(lines)


def write_comparison(cmp: dict, out: str | Path) -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "compare.json"
    path.write_text(json.dumps(cmp, indent=2))
    return path
