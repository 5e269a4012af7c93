"""Speed of the CPU candidate policy, printed as JSON (ratios against baselines run in the same
process): episodes/s at batch 1 and batched against the LM policy on the same questions, and the
encoder call of one decision against the bare sentence-transformers call on the same texts, and
what the answer reader costs (the same cold batched run without it).

    python scripts/bench_cpu_policy.py [--policy DIR] [--questions 64] [--lm-questions 2]

Questions are HotpotQA training questions in the distractor setting (their own 10 paragraphs).
"cold" runs start with an empty embedding cache (every sentence is new, as for a user's first
question); "warm" runs see texts embedded before (RL samples the same questions many times).
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import time


def episodes_per_second(policy, questions, backend_for, batch_size: int) -> float:
    from citeagent.rollout import browser_config, run_episodes

    t0 = time.perf_counter()
    run_episodes(backend_for, policy, [q["question"] for q in questions], batch_size=batch_size,
                 config=browser_config(policy, max_actions=12))
    return len(questions) / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--policy", default=None, help="a CPU policy directory (default: the shipped one)")
    ap.add_argument("--questions", type=int, default=64)
    ap.add_argument("--lm-questions", type=int, default=2, help="questions for the (slow) LM policy; 0 skips it")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    import numpy as np
    import torch

    from citeagent.policies.candidate import CandidatePolicy
    from citeagent.train.cpu_bc import _backends, hotpot_training_questions

    torch.set_num_threads(args.threads)
    questions = hotpot_training_questions(args.questions)
    backend_for = _backends(None, questions, "distractor")
    policy = CandidatePolicy.load(args.policy)
    out: dict = {"questions": len(questions), "threads": args.threads}

    from citeagent.policies import candidate

    def forget() -> None:  # a cold run: no text embedded before, no quotes read by the answer reader
        policy.featurize.cache.clear()
        candidate._READ_MEMO.clear()

    out["answer_reader"] = policy.config.reader or "none"
    forget()
    out["cpu_batch1_cold_eps"] = episodes_per_second(policy, questions, backend_for, 1)
    out["cpu_batch1_warm_eps"] = episodes_per_second(policy, questions, backend_for, 1)
    forget()
    out["cpu_batch32_cold_eps"] = episodes_per_second(policy, questions, backend_for, 32)
    out["cpu_batch32_warm_eps"] = episodes_per_second(policy, questions, backend_for, 32)
    if policy.config.reader:  # what the reader costs: the same cold batched run without it
        reader, policy.config.reader = policy.config.reader, ""
        forget()
        out["cpu_batch32_cold_no_reader_eps"] = episodes_per_second(policy, questions, backend_for, 32)
        policy.config.reader = reader
        out["reader_cost_ratio_cold"] = out["cpu_batch32_cold_no_reader_eps"] / out["cpu_batch32_cold_eps"]

    # One decision's encoder call: the new texts of a results page (8 snippets) and a question.
    from citeenv.search.embedder import load_embedder

    texts_sets = [[q["question"]] + [" ".join(s) for _, s in q["record"]["context"][:8]] for q in questions[:32]]
    st = load_embedder()
    ours, bare = [], []
    for texts in texts_sets:
        policy.featurize.cache.clear()
        t0 = time.perf_counter()
        policy.featurize.embed(texts)
        ours.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        st.encode(texts, batch_size=64, show_progress_bar=False)
        bare.append(time.perf_counter() - t0)
    out["decision_encoder_ms_p50"] = statistics.median(ours) * 1000
    out["sentence_transformers_ms_p50"] = statistics.median(bare) * 1000
    out["encoder_speedup_vs_sentence_transformers"] = statistics.median(bare) / statistics.median(ours)

    if args.lm_questions:
        from citeagent.policies.lm import LMPolicy

        lm = LMPolicy(None)
        lm_qs = questions[: args.lm_questions]
        out["lm_batch1_eps"] = episodes_per_second(lm, lm_qs, backend_for, 1)
        out["cpu_vs_lm_batch1"] = out["cpu_batch1_warm_eps"] / out["lm_batch1_eps"]
        out["cpu_batched_vs_lm_batch1"] = out["cpu_batch32_warm_eps"] / out["lm_batch1_eps"]
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in out.items()}, indent=2))


if __name__ == "__main__":
    main()
