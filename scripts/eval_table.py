"""Print a markdown table of finished `citeagent eval` runs (the README's tables come from here).

    python scripts/eval_table.py runs/eval/hotpotqa__baseline_rm runs/eval/hotpotqa__lm ...
    python scripts/eval_table.py --metrics f1,sp_f1 RUN ...   # other columns
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

DEFAULT = "f1,correct,quote_verbatim_rate,sp_f1,joint_f1,citation_recall,citation_precision,supported_and_plausible"


def cell(m: dict | None) -> str:
    if not m or m.get("mean") is None:
        return ""
    return f"{m['mean']:.3f} [{m['ci_low']:.3f}, {m['ci_high']:.3f}]"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--metrics", default=DEFAULT)
    args = ap.parse_args(argv)
    metrics = [m for m in args.metrics.split(",") if m]
    print("| run | data set | policy | n | " + " | ".join(metrics) + " |")
    print("| --- " * (4 + len(metrics)) + "|")
    for run in args.runs:
        f = Path(run) / "summary.json"
        if not f.is_file():
            print(f"{run}: no summary.json (unfinished run?)", file=sys.stderr)
            return 2
        s = json.loads(f.read_text())
        c = s.get("config", {})
        policy = str(c.get("policy")) + (f" best-of-{s['best_of']}" if (s.get("best_of") or 1) > 1 else "")
        row = [Path(run).name, str(c.get("dataset")), policy, str(s["n_questions"])]
        row += [cell(s["metrics"].get(m)) for m in metrics]
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
