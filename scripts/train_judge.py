"""Train the offline support judge used by `citeagent eval` (same as `citeagent train judge`).

    .venv/bin/python scripts/train_judge.py                       # 263 steps, about an hour of CPU time
    .venv/bin/python scripts/train_judge.py --max-steps 20 --out /tmp/judge   # a smoke run

Saves to $CITEAGENT_HOME/judges/support-minilm (default ~/.cache/citeagent/...), where
`citeagent eval` finds it; judge_meta.json beside the weights records the held-out accuracy.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from citeagent.eval.cli import add_train_judge_parser  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="train_judge.py")
    add_train_judge_parser(parser.add_subparsers(dest="what"))
    args = parser.parse_args(["judge", *(argv if argv is not None else sys.argv[1:])])
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
