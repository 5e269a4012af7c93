"""`citeagent eval`: its flags are EvalConfig's fields (citeagent/config_flags.py), plus
`--compare RUN_A RUN_B`."""
from __future__ import annotations

import argparse


def add_eval_parser(sub) -> argparse.ArgumentParser:
    from citeagent.eval.runner import EvalConfig

    p = sub.add_parser(
        "eval", dataclass_types=[EvalConfig],
        help="evaluate a policy (or a file of answers) on a QA set, with citation checking",
        description="Run a policy on a data set (or score a JSONL of answers made elsewhere), check every quote "
                    "and citation, and write records.jsonl, summary.json and report.html. "
                    "`--compare RUN_A RUN_B` prints paired differences between two runs.",
    )
    p.add_argument("--compare", nargs=2, metavar=("RUN_A", "RUN_B"), default=None,
                   help="compare two finished runs: paired differences B-A with bootstrap intervals")
    p.set_defaults(func=cmd_eval)
    return p


def cmd_eval(args) -> int:
    from citeagent.config_flags import config_from_args
    from citeagent.eval.runner import EvalConfig, run_eval

    if args.compare:
        from citeagent.eval.compare import compare_runs, format_comparison, write_comparison

        cmp = compare_runs(*args.compare, n_resamples=args.bootstrap, seed=args.seed)
        print(format_comparison(cmp))
        if args.out:
            print(f"wrote {write_comparison(cmp, args.out)}")
        return 0
    if args.limit is not None and args.limit < 1:
        raise ValueError("--limit must be at least 1")
    summary = run_eval(config_from_args(args, EvalConfig))
    print(format_summary(summary))
    return 0


def format_summary(summary: dict) -> str:
    from citeagent.eval.summary import METRIC_GROUPS

    lines = [f"{summary['n_questions']} questions -> {summary['out']}"]
    if summary.get("best_of"):
        lines.append(f"best of {summary['best_of']} by reward model (KL_bon {summary['kl_bon']:.3f} nats)")
    judge = summary.get("judge")
    if judge:
        acc = judge.get("heldout_accuracy")
        lines.append(f"judge: {judge['name']} (held-out accuracy {'unknown' if acc is None else f'{acc:.3f}'})")
    for group, names in METRIC_GROUPS.items():
        for m in names:
            v = summary["metrics"].get(m)
            if v:
                lines.append(f"  {group:15s} {m:26s} {v['mean']:8.3f}  [{v['ci_low']:.3f}, {v['ci_high']:.3f}]  n={v['n']}")
    if summary.get("n_bad_records"):
        lines.append(f"bad records: {summary['n_bad_records']} (reasons in records.jsonl)")
    return "\n".join(lines)
