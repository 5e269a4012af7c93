"""`citeagent eval` and `citeagent train judge`. Flags map one to one onto EvalConfig and
JudgeTrainConfig, whose defaults they show."""
from __future__ import annotations

import argparse
import json
import sys

from citeagent.eval.judge_training import JudgeTrainConfig
from citeagent.eval.runner import EvalConfig

_D = EvalConfig()


def add_eval_parser(sub) -> argparse.ArgumentParser:
    from citeagent.cli import add_device_args
    from citeagent.eval.datasets import DATASETS

    p = sub.add_parser(
        "eval", help="evaluate a policy (or a file of answers) on a QA set, with citation checking",
        description="Run a policy on a data set (or score a JSONL of answers made elsewhere), check every quote "
                    "and citation, and write records.jsonl, summary.json and report.html. "
                    "`--compare RUN_A RUN_B` prints paired differences between two runs.",
    )
    p.add_argument("--dataset", default=_D.dataset, help=f"{', '.join(DATASETS)}, or a JSONL path of "
                   "{question, answers[, supporting_facts | urls, id, corpus]} (default: %(default)s)")
    p.add_argument("--policy", default=_D.policy, help="baseline, lm, or a model name/path (default: %(default)s)")
    p.add_argument("--predictions", default=None, metavar="FILE",
                   help="score this JSONL of {question, answer, quotes[, id, score, declined]} instead of running a "
                        "policy; an earlier run's records.jsonl scores that run again (e.g. with another --judge)")
    p.add_argument("--limit", type=int, default=None, help="evaluate the first N questions")
    p.add_argument("--offset", type=int, default=_D.offset, metavar="N",
                   help="skip the first N questions (or prediction lines), e.g. to split a run across processes, "
                        "each with its own --out; `cat` their records.jsonl into one directory and run it again "
                        "with --resume to summarise them together (default: %(default)s)")
    p.add_argument("--out", default=None, help="run directory (default: runs/eval/<dataset>__<policy>)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in --out, skipping finished questions")
    p.add_argument("--judge", default=_D.judge, help="support judge: 'default' (the trained MiniLM judge), a Hugging "
                   "Face NLI model name or directory, or 'none' to leave judge metrics unmeasured (default: %(default)s)")
    p.add_argument("--reward-model", default=None, metavar="PATH", help="also draw the decline curve ranked by this reward "
                   "model; with --best-of, the model that ranks the candidates (default: `citeagent train rm`'s)")
    p.add_argument("--best-of", type=int, default=_D.best_of, metavar="N",
                   help="sample N episodes per question and keep the answer the reward model scores highest; the "
                        "summary reports KL_bon = log N - (N-1)/N (default: %(default)s)")
    p.add_argument("--temperature", type=float, default=_D.temperature,
                   help="with --best-of N > 1 or --sample, the sampling temperature of a greedy LM policy "
                        "(default: %(default)s)")
    p.add_argument("--sample", action="store_true",
                   help="with --best-of 1, one sampled episode per question instead of the greedy one: the "
                        "baseline best-of-n is compared with at the same --temperature")
    p.add_argument("--corpus", default=None, help="the corpus to ask against, overriding the data set's (needed for "
                   "nq-open, asqa, fever unless --web)")
    p.add_argument("--search", default=_D.search, choices=["bm25", "dense", "hybrid"])
    p.add_argument("--web", action="store_true", help="browse the live web (needs --search-url)")
    p.add_argument("--search-url", default=None)
    p.add_argument("--max-actions", type=int, default=_D.max_actions)
    p.add_argument("--batch-size", type=int, default=_D.batch_size)
    add_device_args(p)
    p.add_argument("--seed", type=int, default=_D.seed)
    p.add_argument("--bootstrap", type=int, default=_D.bootstrap, help="bootstrap resamples (default: %(default)s)")
    p.add_argument("--max-citations", type=int, default=_D.max_citations, help="ALCE: citations read per statement")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--safety", action="store_true",
                   help="the safety gate: End: Decline when the rule classifier flags the question, or every candidate "
                        "answer (the best unflagged candidate is kept); records say which rule")
    p.add_argument("--combined-reward", nargs="?", const="default", default=_D.combined_reward, metavar="WEIGHTS",
                   help="rank best-of-n's candidates, and score every answer, by the combined reward: support reward "
                        "model + harmlessness PM - rule penalties; WEIGHTS e.g. support=1,harmless=1,rule=2 "
                        "(default: citeagent.safety.combined.CombinedRewardConfig's); with --safety, an answer it "
                        "scores below declining is not kept")
    p.add_argument("--safety-metrics", action=argparse.BooleanOptionalAction, default=_D.safety_metrics,
                   help="score rule violations, harmlessness and declining (default: on for --dataset redteam)")
    p.add_argument("--compare", nargs=2, metavar=("RUN_A", "RUN_B"), default=None,
                   help="compare two finished runs: paired differences B-A with bootstrap intervals")
    p.set_defaults(func=cmd_eval)
    return p


def cmd_eval(args) -> int:
    if args.compare:
        from citeagent.eval.compare import compare_runs, format_comparison, write_comparison

        cmp = compare_runs(*args.compare, n_resamples=args.bootstrap, seed=args.seed)
        print(format_comparison(cmp))
        if args.out:
            print(f"wrote {write_comparison(cmp, args.out)}")
        return 0
    if args.limit is not None and args.limit < 1:
        raise ValueError("--limit must be at least 1")
    from citeagent.eval.runner import run_eval

    config = EvalConfig(
        dataset=args.dataset, policy=args.policy, predictions=args.predictions, limit=args.limit, offset=args.offset,
        out=args.out, resume=args.resume, judge=args.judge, reward_model=args.reward_model, corpus=args.corpus,
        search=args.search, web=args.web, search_url=args.search_url, max_actions=args.max_actions, best_of=args.best_of,
        temperature=args.temperature, sample=args.sample, batch_size=args.batch_size, device=args.device,
        dtype=args.dtype, seed=args.seed, bootstrap=args.bootstrap, max_citations=args.max_citations, progress=not args.no_progress,
        safety=args.safety, combined_reward=args.combined_reward, safety_metrics=args.safety_metrics,
    )
    summary = run_eval(config)
    print(format_summary(summary))
    return 0


def format_summary(summary: dict) -> str:
    from citeagent.eval.summary import METRIC_GROUPS

    lines = [f"{summary['n_questions']} questions -> {summary['out']}"]
    if summary.get("best_of"):
        lines.append(f"best of {summary['best_of']} by reward model (KL_bon {summary['kl_bon']:.3f} nats)")
    judge = summary.get("judge")
    if judge:
        acc = judge.get("heldout_accuracy")
        lines.append(f"judge: {judge['name']} (held-out accuracy {'unknown' if acc is None else f'{acc:.3f}'})")
    for group, names in METRIC_GROUPS.items():
        for m in names:
            v = summary["metrics"].get(m)
            if v:
                lines.append(f"  {group:15s} {m:26s} {v['mean']:8.3f}  [{v['ci_low']:.3f}, {v['ci_high']:.3f}]  n={v['n']}")
    if summary.get("n_bad_records"):
        lines.append(f"bad records: {summary['n_bad_records']} (reasons in records.jsonl)")
    return "\n".join(lines)


def add_train_judge_parser(train_sub) -> argparse.ArgumentParser:
    d = JudgeTrainConfig()
    p = train_sub.add_parser("judge", help="train the offline support judge and report its held-out accuracy",
                             description="Train the MiniLM support judge on HotpotQA's gold supporting sentences "
                                         "(first 30%% of the shared split held out) and save it where "
                                         "`citeagent eval` finds it.")
    p.add_argument("--out", default=None, help="default: $CITEAGENT_HOME/judges/support-minilm")
    p.add_argument("--base-model", default=None, help="default: the bundled all-MiniLM-L6-v2")
    p.add_argument("--heldout-fraction", type=float, default=d.heldout_fraction)
    p.add_argument("--limit", type=int, default=None, help="HotpotQA records to read (default: all)")
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--max-length", type=int, default=d.max_length)
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--threads", type=int, default=d.threads)
    p.add_argument("--train-embeddings", action="store_true", help="also train the word embeddings (slower on CPU)")
    p.set_defaults(func=cmd_train_judge)
    return p


def cmd_train_judge(args) -> int:
    from citeagent.eval.judge_training import train_judge

    keys = ("out", "base_model", "heldout_fraction", "limit", "epochs", "batch_size", "lr", "max_length", "max_steps", "seed", "threads")
    config = JudgeTrainConfig(**{k: getattr(args, k) for k in keys}, freeze_embeddings=not args.train_embeddings)
    meta = train_judge(config)
    print(json.dumps({k: meta[k] for k in ("path", "heldout_accuracy", "heldout_balanced_accuracy", "n_train_pairs", "steps")}
                     | {"heldout_by_kind": meta["heldout"].get("by_kind")}, indent=2))
    return 0


def main(argv=None) -> int:
    """`python -m citeagent.eval.cli ...` runs `citeagent eval` alone."""
    parser = argparse.ArgumentParser(prog="citeagent")
    add_eval_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["eval", *(argv if argv is not None else sys.argv[1:])])
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
