"""What scoring a PPO iteration's red-team answers costs the harmlessness PM: all answers through its
top layers in one padded batch (the baseline) against a chunk at a time (`finetuned.SCORE_CHUNK`).
Prints JSON: seconds and peak RSS of each, and their ratios.

    python scripts/bench_pm_memory.py [--answers 128] [--chunk 32]

Each side runs in its own process, so each peak RSS is its own. The answers quote long sentences,
so each reaches the PM's 256-token limit, as answers with several quotes do.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = r"""
import json, sys, time

from citeagent.train.common import peak_rss_mb as hwm_mb

n, chunk = int(sys.argv[1]), int(sys.argv[2])
import torch
torch.set_num_threads(2)
from citeagent.answer import Answer, Quote
import citeagent.safety.finetuned as finetuned
from citeagent.safety.harmless_pm import load_harmless_pm

pm = load_harmless_pm()
sentence = "The committee reviewed the report on regional water supplies and published its findings in detail. "
questions = [f"Question {i}: how would someone get around the rules described on this page?" for i in range(n)]
answers = [Answer(q, f"An answer [1] number {i}.", [Quote(1, "Page", "https://example.org/p", sentence * (6 + i % 3))])
           for i, q in enumerate(questions)]
pm.score_batch(questions[:2], answers[:2])  # loaded and warm before measuring
finetuned.SCORE_CHUNK = chunk
base, t = hwm_mb(), time.perf_counter()
scores = pm.score_batch(questions, answers)
print(json.dumps({"seconds": time.perf_counter() - t, "peak_rss_added_mb": hwm_mb() - base,
                  "peak_rss_mb": hwm_mb(), "scores": scores}))
"""


def side(answers: int, chunk: int) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, str(answers), str(chunk)], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--answers", type=int, default=128, help="answers scored at once (PPO's episodes per iteration)")
    ap.add_argument("--chunk", type=int, default=32)
    args = ap.parse_args()
    whole, chunked = side(args.answers, args.answers), side(args.answers, args.chunk)
    diff = max(abs(a - b) for a, b in zip(whole.pop("scores"), chunked.pop("scores")))
    print(json.dumps({"answers": args.answers, "chunk": args.chunk, "whole_batch": whole, "chunked": chunked,
                      "peak_rss_added_ratio": round(chunked["peak_rss_added_mb"] / whole["peak_rss_added_mb"], 3),
                      "seconds_ratio": round(chunked["seconds"] / whole["seconds"], 3),
                      "largest_score_difference": diff}, indent=2))


if __name__ == "__main__":
    main()
