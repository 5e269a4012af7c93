"""How many questions a test of B against A needs, from paired tests already run.

A test that shows no difference says little unless it could have found one of the size that
matters. This reads finished `citeagent eval` runs, tests of the same two policies on disjoint
question sets, and prints JSON: for each metric and each test, the mean per-question difference
B - A, its standard deviation and the smallest difference that test finds with the given power;
then the tests pooled (their questions put together, an estimate for planning, not a claim), the
questions a new test needs to find the pooled difference, and the power a test of --planned
questions has.

    python scripts/sample_size.py \
        --test q61-266 runs/eval/hotpotqa_q61-266__bc4 runs/eval/hotpotqa_q61-266__bc4_best4_t03_rm_onpolicy2_clean \
        --test fresh145 runs/eval/fresh145__bc4 runs/eval/fresh145__bc4_best4_t03 \
        --metric f1 sp_f1 --alpha 0.025 --planned 1500
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys


def summarize(diffs: list[float], alpha: float, power: float) -> dict:
    from citeagent.eval.power import minimum_detectable_difference

    n, mean, sd = len(diffs), statistics.fmean(diffs), statistics.stdev(diffs)
    return {"n": n, "mean": mean, "sd": sd, "mde": minimum_detectable_difference(sd, n, alpha, power)}


def rounded(row: dict) -> dict:
    """For printing: 4 decimals, unlike the values the sizes are computed from."""
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--test", nargs=3, action="append", required=True, metavar=("NAME", "RUN_A", "RUN_B"),
                    help="one finished test: a name and its two eval run directories (repeat for each test)")
    ap.add_argument("--metric", nargs="+", default=["f1", "sp_f1"])
    ap.add_argument("--alpha", type=float, default=0.025, help="two-sided level of the planned test's p-value")
    ap.add_argument("--power", type=float, default=0.8)
    ap.add_argument("--planned", type=int, default=None, help="questions in the planned test: its power is printed")
    args = ap.parse_args(argv)
    from citeagent.eval.compare import paired_differences
    from citeagent.eval.power import power_at, questions_needed

    out = {"alpha": args.alpha, "power": args.power, "planned": args.planned, "metrics": {}}
    try:
        for metric in args.metric:
            tests, pooled, seen = [], [], {}
            for name, run_a, run_b in args.test:
                d = paired_differences(run_a, run_b, metric)
                if len(d) < 2:
                    raise ValueError(f"test {name!r}: {len(d)} question(s) with {metric!r} in both runs; "
                                     "a paired test needs 2 or more (is the metric spelt as in summary.json?)")
                again = sorted(set(d) & set(seen))
                if again:
                    raise ValueError(f"tests {seen[again[0]]!r} and {name!r} share {len(again)} question(s) "
                                     f"(e.g. {again[0]!r}): pool only tests on different questions")
                seen.update(dict.fromkeys(d, name))
                tests.append({"test": name, **rounded(summarize(list(d.values()), args.alpha, args.power))})
                pooled += d.values()
            p = summarize(pooled, args.alpha, args.power)
            row = rounded(p)
            if p["mean"] > 0:
                row["questions_needed"] = questions_needed(p["sd"], p["mean"], args.alpha, args.power)
                if args.planned:
                    row["power_at_planned"] = round(power_at(p["sd"], p["mean"], args.planned, args.alpha), 3)
            else:
                row["questions_needed"] = None
                row["why"] = "the pooled difference is not positive: no test size shows B > A"
            out["metrics"][metric] = {"tests": tests, "pooled": row}
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
