"""How much of best-of-n's headroom a reward-model recipe captures, cross-validated on a policy's
own samples of HotpotQA training questions, so no evaluation question is touched.

Best-of-n can do no better than picking each question's best sample (the oracle, by the metric
at hand) and, on average, does no worse than one sample. Where a reward model lands between the
two is what decides whether best-of-n beats the policy, and a pairwise accuracy on held-out pairs
only hints at it. This script splits the questions of `--answers` (files of sampled answers, as
`scripts/overoptimization.py --answers-out` writes them) into folds. For each recipe and each
fold it trains a reward model on the other folds' samples, with every pair about the fold's
questions dropped from every source (`--exclude-questions`), then runs best-of-n's own choice on
the fold's samples. It prints JSON: for answer F1, supporting-fact F1 (quotes matched to the
record's sentences, as the gold judge does) and the gold judge's score, the mean of one sample,
the reward model's pick, the oracle, the pick's paired gain over one sample with a 95% bootstrap
interval, and the fraction of the headroom captured; then every recipe against the first. Every
recipe is checked before any model trains.

    python scripts/rm_selection_cv.py --answers runs/rm_data/bc4_t07_q12-52.jsonl \
        runs/rm_data/bc4_t03_q52-102.jsonl runs/rm_data/bc4_t03_q102-152.jsonl \
        --select-on runs/rm_data/bc4_t03_q52-102.jsonl runs/rm_data/bc4_t03_q102-152.jsonl \
        --recipe base "--data lfqa,hotpotqa-synth,hotpotqa-gold:{train} --max-train-pairs 1000" \
        --recipe ep3 "--data lfqa,hotpotqa-synth,hotpotqa-gold:{train} --max-train-pairs 1000 --epochs 3" \
        --folds 5 --out runs/rm_cv

A recipe is `citeagent train rm`'s flags; `{train}` stands for the file of the other folds'
samples. Each fold's model is kept under OUT/RECIPE/fold_K, and OUT/picks.jsonl holds every
question's candidates, scores and picks.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import random
import shlex
import statistics
import sys
import time
from pathlib import Path

METRICS = ("answer_f1", "sp_f1", "gold")


def read_samples(paths: list[str]) -> dict[str, list[dict]]:
    """Raw answer rows grouped by question (question_key), every sample kept: best-of-n chooses
    among all n, repeats included."""
    from citeagent.eval.datasets import question_key
    from citeagent.reward.sources import jsonl_rows, parse_policy_answer

    out: dict[str, list[dict]] = {}
    for path in paths:
        for where, row in jsonl_rows(Path(path)):
            ans = parse_policy_answer(row, where)
            out.setdefault(question_key(ans.question), []).append({"row": row, "answer": ans})
    return out


def candidate_metrics(answer, record: dict) -> dict:
    from citeagent.eval.evidence_metrics import supporting_fact_metrics
    from citeagent.reward.gold_judge import gold_score, quoted_facts

    g = gold_score(answer, record)
    gold_facts = {(t, int(s)) for t, s in record["supporting_facts"]}
    sp = supporting_fact_metrics(quoted_facts(answer, record), gold_facts)["sp_f1"]
    return {"answer_f1": g["answer_f1"], "sp_f1": sp, "gold": g["score"]}


def assign_folds(questions: list[str], k: int, seed: int) -> dict[str, int]:
    order = sorted(questions)
    random.Random(seed).shuffle(order)
    return {q: i % k for i, q in enumerate(order)}


def recipe_config(flags: str, train_file: Path, exclude_file: Path, out: Path, threads: int):
    """`citeagent train rm`'s config from a recipe's flags; a bad flag or value raises ValueError."""
    from transformers import HfArgumentParser

    from citeagent.train.rm_config import RMConfig

    class Parser(HfArgumentParser):
        def error(self, message):
            raise ValueError(message)

    (cfg,) = Parser([RMConfig], prog="recipe").parse_args_into_dataclasses(
        shlex.split(flags.replace("{train}", str(train_file))))
    cfg.exclude_questions, cfg.out = str(exclude_file), str(out)
    cfg.threads = cfg.threads or threads
    return cfg


def train_fold(cfg) -> None:
    from citeagent.reward.sources import load_sources
    from citeagent.train.rm import train_reward_model

    with contextlib.redirect_stdout(sys.stderr):  # the trainer prints its summary; stdout is the JSON
        train_reward_model(cfg, sources=load_sources(cfg.data, cfg.exclude_questions), log=lambda m: None)


def rounded(d: dict) -> dict:
    """For printing: 4 decimals; the values are computed from unrounded ones."""
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in d.items()}


def summarize(rows: list[dict], metric: str, n_boot: int) -> dict:
    from citeagent.eval.bootstrap import paired_bootstrap_ci

    gain = paired_bootstrap_ci([r["sample"][metric] for r in rows], [r["pick"][metric] for r in rows], n_resamples=n_boot)
    sample, pick = gain["mean_a"], gain["mean_b"]
    oracle = statistics.fmean(r["oracle"][metric] for r in rows)
    room = oracle - sample
    return {"sample": round(sample, 4), "best_of_n": round(pick, 4), "oracle": round(oracle, 4), "gain": rounded(gain),
            "captured": round((pick - sample) / room, 3) if room > 0 else None}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--answers", nargs="+", required=True, help="sampled answers to HotpotQA training questions (JSONL)")
    ap.add_argument("--select-on", nargs="+", default=None,
                    help="score best-of-n on the questions of these files only (default: every --answers file)")
    ap.add_argument("--recipe", nargs=2, action="append", required=True, metavar=("NAME", "FLAGS"),
                    help="a name and `citeagent train rm` flags, with {train} for the fold's samples (repeat)")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads for training (0: torch's default)")
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)

    def fail(msg: str) -> int:
        print(f"rm_selection_cv.py: {msg}", file=sys.stderr)
        return 2

    names = [n for n, _ in args.recipe]
    if len(set(names)) != len(names):
        return fail(f"two recipes share a name ({', '.join(names)}): give each its own.")
    for name, flags in args.recipe:
        if "{train}" not in flags:
            return fail(f"recipe {name!r} never uses {{train}}, so its models would not train on the policy's "
                        "samples: add hotpotqa-gold:{train} to its --data.")
        try:
            recipe_config(flags, Path("train.jsonl"), Path("exclude.jsonl"), Path("out"), args.threads)
        except ValueError as e:
            return fail(f"recipe {name!r}: {e} (its flags are `citeagent train rm`'s; see --help there).")
    missing = [p for p in args.answers + (args.select_on or []) if not Path(p).is_file()]
    if missing:
        return fail(f"no such answers file: {', '.join(missing)}")

    from citeagent.eval.datasets import question_key
    from citeagent.policies.best_of_n import choose
    from citeagent.reward.gold_judge import read_hotpot_records
    from citeagent.reward.model import load_reward_model

    samples = read_samples(args.answers)
    select = set(read_samples(args.select_on)) if args.select_on else set(samples)
    if not select <= set(samples):
        return fail("--select-on has questions that no --answers file has: list its files under --answers too.")
    records = {question_key(r["question"]): r for r in read_hotpot_records()}
    unknown = [q for q in samples if q not in records]
    if unknown:
        return fail(f"{len(unknown)} questions are not HotpotQA questions (e.g. {unknown[0][:80]!r}), so the gold "
                    "judge cannot score their answers.")
    if not 2 <= args.folds <= len(select):
        return fail(f"--folds must be between 2 and the {len(select)} questions scored.")
    fold_of = assign_folds(sorted(select), args.folds, args.seed)
    # Questions outside --select-on are never scored; they train every fold.
    metrics = {q: [candidate_metrics(s["answer"], records[q]) for s in samples[q]] for q in select}

    out = Path(args.out)
    (out / "folds").mkdir(parents=True, exist_ok=True)
    for k in range(args.folds):
        with open(out / "folds" / f"train_{k}.jsonl", "w") as tr, open(out / "folds" / f"exclude_{k}.jsonl", "w") as ex:
            for q, rows in samples.items():
                if fold_of.get(q) == k:
                    # An eval data set's line, which is what --exclude-questions reads.
                    ex.write(json.dumps({"question": rows[0]["answer"].question, "answers": [str(records[q]["answer"])]}) + "\n")
                else:
                    tr.writelines(json.dumps(r["row"]) + "\n" for r in rows)

    picks: dict[str, list[dict]] = {name: [] for name in names}
    result = {"questions": len(select), "samples_per_question": round(sum(len(samples[q]) for q in select) / len(select), 2),
              "folds": args.folds, "recipes": {}}
    for name, flags in args.recipe:
        t0 = time.perf_counter()
        for k in range(args.folds):
            model_dir = out / name / f"fold_{k}"
            train_fold(recipe_config(flags, out / "folds" / f"train_{k}.jsonl", out / "folds" / f"exclude_{k}.jsonl",
                                     model_dir, args.threads))
            rm = load_reward_model(model_dir)
            for q in sorted(q for q in select if fold_of[q] == k):
                answers = [s["answer"] for s in samples[q]]
                scores = [float(x) for x in rm.score_batch([a.question for a in answers], answers)]
                best = choose(scores, [not a.declined for a in answers])
                m = metrics[q]
                picks[name].append({
                    "question": answers[0].question, "fold": k, "scores": scores, "chosen": best,
                    "metrics": m, "pick": m[best],
                    "sample": {x: sum(c[x] for c in m) / len(m) for x in METRICS},
                    "oracle": {x: max(c[x] for c in m) for x in METRICS},
                })
            print(f"{name}: fold {k + 1}/{args.folds} done", file=sys.stderr)
        rows = picks[name]
        result["recipes"][name] = {"flags": flags, "seconds": round(time.perf_counter() - t0, 1),
                                   **{m: summarize(rows, m, args.n_boot) for m in METRICS}}
    from citeagent.eval.bootstrap import paired_bootstrap_ci

    base = names[0]
    result["against_" + base] = {}
    a = {r["question"]: r["pick"] for r in picks[base]}
    qs = sorted(a)
    for name in names[1:]:
        b = {r["question"]: r["pick"] for r in picks[name]}
        result["against_" + base][name] = {
            m: rounded(paired_bootstrap_ci([a[q][m] for q in qs], [b[q][m] for q in qs], n_resamples=args.n_boot))
            for m in METRICS}
    with open(out / "picks.jsonl", "w") as f:
        for name in names:
            f.writelines(json.dumps({"recipe": name, **r}) + "\n" for r in picks[name])
    (out / "summary.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
