"""HotpotQA training questions that no model of a pipeline has touched: a fresh test set.

Every held-out question of the shared split has been used to test something once the first tests
are run. The training questions that no policy was cloned on, no PPO run browsed and no answer
file (reward-model data, sweeps) holds are just as unseen by those models, and come from the same
file and the same pooled corpus. This writes them as a JSONL data set for `citeagent eval`
(`--corpus hotpotqa`), with their gold supporting sentences, and prints what it left out.

    python scripts/untouched_questions.py --demos runs/demos/hotpotqa_150n.jsonl runs/demos/hotpotqa_new300n.jsonl \
        --answers runs/rm_data/*.jsonl --ppo runs/ppo4 runs/ppo5 runs/ppo6 --out runs/fresh/questions.jsonl
    citeagent eval --dataset runs/fresh/questions.jsonl --corpus hotpotqa --policy runs/bc4 --out runs/eval/fresh_bc4

Reward models are not read: a reward model tested by best-of-n on these questions is trained with
`citeagent train rm --exclude-questions runs/fresh/questions.jsonl`, which drops every pair about
them (hotpotqa-synth makes pairs for every training question).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def questions_in(path: Path) -> set[str]:
    """The `question` of every line of a demonstration or answer file."""
    from citeagent.eval.datasets import question_key

    out = set()
    with path.open(encoding="utf-8") as f:
        for ln, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                q = json.loads(line)["question"]
            except (ValueError, KeyError, TypeError):
                raise ValueError(f"{path} line {ln}: not a JSON object with a \"question\"; give demonstration "
                                 "files (`citeagent train demos`) or answer files (scripts/overoptimization.py)") from None
            out.add(question_key(q))
    return out


def ppo_question_indices(run: Path, n_train: int) -> list[int]:
    """The training questions a PPO run browsed, replayed from its checkpoint's cursor and seed."""
    from citeagent.train.ppo import question_indices

    state_file = run / "checkpoint" / "trainer_state.json"
    if not state_file.is_file():
        raise ValueError(f"{run}: no checkpoint/trainer_state.json; give the --out directory of `citeagent train ppo`")
    state = json.loads(state_file.read_text())
    if state["config"].get("dataset", "hotpotqa") != "hotpotqa":
        raise ValueError(f"{run} trained on {state['config']['dataset']!r}, not the shared HotpotQA split")
    return question_indices(n_train, 0, int(state["cursor"]), int(state["config"]["seed"]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--demos", nargs="*", default=[], help="demonstration files any policy was cloned on")
    ap.add_argument("--answers", nargs="*", default=[], help="answer files (reward-model data, sweeps)")
    ap.add_argument("--ppo", nargs="*", default=[], help="PPO run directories")
    ap.add_argument("--out", required=True, help="JSONL data set to write")
    args = ap.parse_args(argv)
    from citeagent.eval.datasets import hotpot_question_id, hotpotqa_split, question_key
    from citeagent.reward.gold_judge import read_hotpot_records

    train = hotpotqa_split(read_hotpot_records())[0]
    keys = [question_key(r["question"]) for r in train]
    used: dict[str, set[str]] = {}
    try:
        for p in args.demos + args.answers:
            used[p] = questions_in(Path(p))
        for run in args.ppo:
            used[run] = {keys[i] for i in ppo_question_indices(Path(run), len(train))}
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    touched = set().union(*used.values()) if used else set()
    fresh = [r for r, k in zip(train, keys) if k not in touched]
    if not fresh:
        print("error: every training question has been used by one of these files or runs", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as f:
        for r in fresh:
            f.write(json.dumps({"id": hotpot_question_id(r), "question": r["question"], "answer": r["answer"],
                                "supporting_facts": r["supporting_facts"], "type": r.get("type"),
                                "level": r.get("level")}, ensure_ascii=False) + "\n")
    print(json.dumps({"training_questions": len(train), "fresh": len(fresh), "out": str(out),
                      "touched_by": {k: len(v & set(keys)) for k, v in used.items()}}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
