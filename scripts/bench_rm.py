"""Reward-model training speed: citeagent's trainer against TRL's RewardTrainer used plainly, on
the same pre-tokenised pairs, the same backbone and the same number of whole epochs, in one run.

    .venv/bin/python scripts/bench_rm.py --pairs 192 --epochs 1 --out bench_rm.json

Variants:
- trl_plain: RewardTrainer with RewardConfig's defaults (bf16 autocast, random batches, hard labels);
- trl_plain_fp32: the same with bf16 off, to separate the precision effect from the batching one;
- citeagent: CiteRewardTrainer (soft labels for ties, length-grouped batches, fp32 on CPU).
pairs/s counts pairs seen by the optimiser per second of trainer.train(); the JSON also gives the
ratio of citeagent to each plain variant. Whole epochs, not a number of steps: length-grouped
batches run from the longest to the shortest, so a partial epoch would time only the long ones.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="hh-rlhf,hotpotqa-synth", help="preference sources (see citeagent train rm)")
    ap.add_argument("--backbone", default="minilm")
    ap.add_argument("--pairs", type=int, default=256, help="pairs in the training set")
    ap.add_argument("--epochs", type=int, default=1, help="passes over the pairs per variant")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--repeats", type=int, default=1, help="runs per variant; the fastest counts")
    ap.add_argument("--out", default="", help="also write the JSON here")
    args = ap.parse_args()

    import torch
    from datasets import Dataset
    from trl import RewardConfig, RewardTrainer

    from citeagent.train.rm_config import RMConfig
    from citeagent.reward.model import build_backbone, encode_answer
    from citeagent.reward.sources import load_sources, subsample
    from citeagent.train.rm import CiteRewardTrainer, pair_rows, reward_config

    if args.threads:
        torch.set_num_threads(args.threads)
    comps = [c for cs, _ in load_sources(args.data).values() for c in cs]
    comps = subsample(comps, args.pairs, seed=0)
    _, tokenizer = build_backbone(args.backbone)
    cfg = RMConfig(backbone=args.backbone, batch_size=args.batch_size, max_length=args.max_length, epochs=args.epochs,
                   logging_steps=10**6, threads=args.threads)
    rows = pair_rows(lambda q, a: encode_answer(tokenizer, q, a, cfg.max_length, cfg.max_question_tokens), comps, "webgpt")
    lengths = [len(r["chosen_ids"]) for r in rows] + [len(r["rejected_ids"]) for r in rows]

    def run(variant: str) -> float:
        model, tok = build_backbone(args.backbone, seed=0)
        work = tempfile.mkdtemp(prefix="bench-rm-")
        try:
            if variant == "citeagent":
                trainer = CiteRewardTrainer(model=model, args=reward_config(cfg, work), processing_class=tok,
                                            train_dataset=Dataset.from_list(rows))
            else:
                plain = Dataset.from_list([{"chosen_ids": r["chosen_ids"], "rejected_ids": r["rejected_ids"]} for r in rows])
                extra = {"bf16": False} if variant == "trl_plain_fp32" else {}
                targs = RewardConfig(output_dir=work, per_device_train_batch_size=args.batch_size, num_train_epochs=args.epochs,
                                     learning_rate=cfg.lr, report_to="none", save_strategy="no", logging_steps=10**6,
                                     disable_tqdm=True, max_length=None, use_cpu=not torch.cuda.is_available(), **extra)
                trainer = RewardTrainer(model=model, args=targs, train_dataset=plain, processing_class=tok)
            t0 = time.perf_counter()
            trainer.train()
            return time.perf_counter() - t0
        finally:
            shutil.rmtree(work, ignore_errors=True)

    results = {}
    for _ in range(args.repeats):
        for variant in ("trl_plain", "trl_plain_fp32", "citeagent"):  # interleaved: load drifts hit all alike
            seconds = run(variant)
            best = results.get(variant)
            if best is None or seconds < best["seconds"]:
                results[variant] = {"seconds": seconds, "pairs_per_second": len(rows) * args.epochs / seconds}
            print(f"{variant}: {seconds:.1f} s", file=sys.stderr)
    out = {
        "backbone": args.backbone, "data": args.data, "pairs": len(rows), "epochs": args.epochs,
        "batch_size": args.batch_size, "max_length": args.max_length, "torch_threads": torch.get_num_threads(),
        "mean_tokens_per_answer": sum(lengths) / len(lengths), "device": "cuda" if torch.cuda.is_available() else "cpu",
        "results": results,
        "speedup_vs_trl_plain": results["trl_plain"]["seconds"] / results["citeagent"]["seconds"],
        "speedup_vs_trl_plain_fp32": results["trl_plain_fp32"]["seconds"] / results["citeagent"]["seconds"],
    }
    text = json.dumps(out, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
