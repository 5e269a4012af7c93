"""Latency of the answer reader's `candidates`. Prints JSON.

    .venv/bin/python scripts/bench_reader.py [--reader DIR] [--threads 1] [--repeats 20]

Questions are HotpotQA training questions, each with its first two gold supporting sentences as
the quotes (what the browsing policy hands the reader at the end of an episode).

    single_ms        one `candidates(question, 2 quotes)` call, p50/p90 over --repeats questions
    batch32_ms       one `candidates_batch` call over 32 such questions, p50/p90 over --repeats batches
    sequential32_ms  the baseline: the same 32 questions as 32 `candidates` calls, p50/p90
    batch_speedup    sequential32 p50 / batch32 p50, both measured in this run
    *_cpu_ms         the same figures in this process's CPU time
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def percentiles(ms: list[float]) -> dict:
    ms = sorted(ms)
    return {"p50": round(statistics.median(ms), 2), "p90": round(ms[min(len(ms) - 1, int(0.9 * len(ms)))], 2)}


def timed(fn) -> tuple[float, float]:
    """(wall ms, this process's CPU ms): on a shared machine the wall time mostly measures the
    other processes, the CPU time what the call costs."""
    t, c = time.perf_counter(), time.process_time()
    fn()
    return (time.perf_counter() - t) * 1000, (time.process_time() - c) * 1000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reader", default=None, help="reader directory (default: the shipped artifact)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default %(default)s)")
    ap.add_argument("--repeats", type=int, default=20, help="timed calls per figure (default %(default)s)")
    args = ap.parse_args()
    import torch

    from citeagent.eval.datasets import hotpotqa_split
    from citeagent.eval.reading import gold_quotes
    from citeagent.policies.reader import Reader
    from citeenv.sources.hotpotqa import read_hotpotqa_records

    torch.set_num_threads(args.threads)
    reader = Reader.load(args.reader)
    train, _ = hotpotqa_split(list(read_hotpotqa_records()))
    episodes = [(r["question"], q[:2]) for r in train if len(q := gold_quotes(r)) >= 2]
    need = 32 * args.repeats
    episodes = (episodes * (need // len(episodes) + 1))[:need]
    reader.candidates_batch(episodes[:32])  # warm-up
    single = [timed(lambda e=e: reader.candidates(*e)) for e in episodes[:args.repeats]]
    batches = [episodes[i * 32:(i + 1) * 32] for i in range(args.repeats)]
    batch = [timed(lambda b=b: reader.candidates_batch(b)) for b in batches]
    sequential = [timed(lambda b=b: [reader.candidates(*e) for e in b]) for b in batches[:max(3, args.repeats // 4)]]
    out = {"threads": args.threads, "quotes_per_question": 2, "load_average_1min": round(os.getloadavg()[0], 2)}
    for kind, col in (("ms", 0), ("cpu_ms", 1)):
        wall = {name: [t[col] for t in runs] for name, runs in
                (("single", single), ("batch32", batch), ("sequential32", sequential))}
        out |= {f"{name}_{kind}": percentiles(v) for name, v in wall.items()}
        out[f"batch_speedup_{kind}"] = round(statistics.median(wall["sequential32"]) / statistics.median(wall["batch32"]), 2)
        out[f"batch32_{kind}_per_question"] = round(statistics.median(wall["batch32"]) / 32, 2)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
