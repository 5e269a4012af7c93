"""Oracle-evidence reading figures of the answer reader. Prints JSON.

    .venv/bin/python scripts/eval_reader.py --split validation   # the trainer's validation questions
    .venv/bin/python scripts/eval_reader.py --split heldout      # the 266 held-out questions: run ONCE

Each question's quotes are its gold supporting sentences; the figures are answer EM/F1
(HotpotQA's official normalisation) of the best candidate, the yes/no accuracy, and how often a
gold answer is among the top k candidates (citeagent/eval/reading.py).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reader", default=None, help="reader directory (default: the shipped artifact)")
    ap.add_argument("--split", choices=("validation", "heldout"), required=True)
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    import torch

    from citeagent.eval.datasets import hotpotqa_split
    from citeagent.eval.reading import reading_figures
    from citeagent.policies.reader import Reader
    from citeagent.train.reader import is_validation
    from citeenv.sources.hotpotqa import read_hotpotqa_records

    torch.set_num_threads(args.threads)
    reader = Reader.load(args.reader)
    train, heldout = hotpotqa_split(list(read_hotpotqa_records()))
    if args.split == "heldout":
        records = heldout
    else:
        fraction = reader.meta.get("training", {}).get("valid_fraction")
        if fraction is None:
            raise SystemExit(f"{args.reader or 'the shipped reader'} records no valid_fraction; cannot rebuild its split")
        records = [r for r in train if is_validation(r, fraction)]
    print(json.dumps({"split": args.split, "reader": str(args.reader or "shipped")}
                     | reading_figures(reader, records, k=args.k), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
