"""Best-of-n by another reward model over the candidates an earlier run already sampled.

`citeagent eval --best-of N` keeps every candidate's answer in its records (`best_of.answers`).
This picks again among them with the reward model given, and writes the chosen answers as a
predictions file that `citeagent eval --predictions` scores. Two reward models compared this way
choose from the same samples, so the difference between them is the ranking alone.

    python scripts/rerank_best_of.py runs/eval/RUN/records.jsonl --reward-model runs/rm_b --out runs/rerank_b.jsonl
    citeagent eval --dataset hotpotqa --predictions runs/rerank_b.jsonl --out runs/eval/RUN__rm_b
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("records", help="records.jsonl of a `citeagent eval --best-of N` run")
    ap.add_argument("--reward-model", default=None, help="reward model directory (default: the one `citeagent train rm` saves)")
    ap.add_argument("--out", required=True, help="predictions JSONL to write")
    ap.add_argument("--device", default="auto", help="auto (a CUDA GPU if there is one, else the CPU), cpu, cuda[:N]")
    args = ap.parse_args(argv)
    from citeagent.eval.runner import read_records
    from citeagent.policies.best_of_n import load_scorer, rerank, stored_candidates

    path = Path(args.records)
    records = read_records(path)
    if not records:
        print(f"error: no records in {path}: give the records.jsonl of a `citeagent eval --best-of N` run.", file=sys.stderr)
        return 2
    try:
        candidates = stored_candidates(records)  # a record without candidates fails before the reward model loads
        lines = rerank(records, load_scorer(args.reward_model, device=args.device), candidates)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines), encoding="utf-8")
    changed = sum(1 for r, x in zip(records, lines) if r["best_of"]["chosen"] != x["chosen"])
    print(f"{len(lines)} questions; the reward model chose another candidate than the run's for {changed}; wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
