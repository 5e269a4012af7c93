"""How well a CPU policy answers HotpotQA training questions, and how well it could with its own quotes.

For the HotpotQA training questions (distractor setting, greedy; split by whether BC and the
shipped reader learnt from them): the answer F1 it gets, and the best
answer F1 among the candidate answers its answer head chose from (the headroom of answer choice).
Training questions only: a diagnostic for choosing what to train, never a test.

    python scripts/answer_headroom.py runs/cpu_pipeline10/bc
prints JSON.
"""
from __future__ import annotations

import argparse
import json

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("policy", help="a CPU policy directory")
    ap.add_argument("--last", type=int, default=0, help="only the last N training questions (0: all)")
    args = ap.parse_args()

    from citeagent.answer import Answer
    from citeagent.policies.candidate import CandidatePolicy
    from citeagent.policies.spans import format_answer
    from citeagent.reward.gold_judge import gold_score
    from citeagent.train.cpu_bc import question_pools
    from citeagent.train.cpu_rollout import collect_episodes

    policy = CandidatePolicy.load(args.policy, temperature=0.0)
    (questions, backend_for), = question_pools("distractor").values()
    idx = list(range(len(questions) - (args.last or len(questions)), len(questions)))
    options = {}
    answer_options = policy.answer_options

    def keep(infos):  # the candidate answers of each answering state, kept by question
        out = answer_options(infos)
        for info, (cands, _) in zip(infos, out):
            options[info["question"]] = (info["quotes"], cands)
        return out

    policy.answer_options = keep
    episodes = collect_episodes(policy, [questions[i] for i in idx], lambda k: backend_for(idx[k]), 12,
                                batch_size=64, keep_decisions=False, answer_form="span")
    got, best = [], []
    for e in episodes:
        got.append(e.gold["answer_f1"])
        quotes, cands = options.get(e.question["question"], ([], []))
        best.append(max((gold_score(Answer(e.question["question"], format_answer(c, "span", quotes)),
                                    e.question["record"])["answer_f1"] for c in cands), default=0.0))
    # BC keeps the last 10% of the training questions back (cpu_bc's valid_fraction) to pick its
    # epoch; the shipped reader kept its own 15% back (train/reader.py's is_validation)
    from citeagent.train.reader import is_validation

    n_valid = max(1, int(len(questions) * 0.1))
    bc_valid = [i >= len(questions) - n_valid for i in idx]
    reader_valid = [is_validation(questions[i]["record"], 0.15) for i in idx]
    parts = {"all": range(len(episodes))}
    for bc in (False, True):
        for reader in (False, True):
            rows = [k for k in range(len(idx)) if bc_valid[k] == bc and reader_valid[k] == reader]
            if rows:
                parts[f"bc_{'validation' if bc else 'trained'}__reader_{'validation' if reader else 'trained'}"] = rows
    print(json.dumps({"policy": args.policy, **{part: {
        "questions": len(rows), "answer_f1": round(float(np.mean([got[i] for i in rows])), 4),
        "best_candidate_answer_f1": round(float(np.mean([best[i] for i in rows])), 4)} for part, rows in parts.items()}},
        indent=2))


if __name__ == "__main__":
    main()
