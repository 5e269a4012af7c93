"""The `citeagent` command. Each capability registers its own sub-command; this file only
assembles them and turns expected failures into one clear line instead of a traceback."""
from __future__ import annotations

import argparse
import json
import os
import sys

EXIT_USAGE = 2


def _add_ask(sub) -> None:
    from citeagent.backend import add_backend_args

    p = sub.add_parser("ask", help="answer a question with verbatim, numbered citations")
    p.add_argument("question")
    add_backend_args(p)
    p.add_argument("--policy", default="baseline", help="baseline (default: retrieval, no training), cpu (the trained "
                   "CPU-scale agent), lm (SmolLM2-135M), a trained policy directory, or a model name/path")
    p.add_argument("--best-of", type=int, default=1, metavar="N",
                   help="sample N episodes and keep the answer the reward model scores highest (default 1)")
    p.add_argument("--reward-model", default=None, metavar="DIR",
                   help="the reward model --best-of ranks by (default: the one `citeagent train rm` saves)")
    p.add_argument("--temperature", type=float, default=1.0,
                   help="with --best-of N > 1, the sampling temperature of a greedy LM policy (default %(default)s)")
    p.add_argument("--max-actions", type=int, default=20)
    p.add_argument("--safety", action="store_true",
                   help="decline (End: Decline) when the rule classifier flags the question or every candidate answer, "
                        "and say which rule")
    p.add_argument("--combined-reward", nargs="?", const="default", default=None, metavar="WEIGHTS",
                   help="with --best-of, rank by the combined reward (support reward model + harmlessness PM - rule "
                        "penalties), e.g. support=1,harmless=1,rule=2; with --safety, also decline when it scores "
                        "declining above every candidate")
    add_device_args(p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print the answer as JSON")
    p.add_argument("--gophercite", action="store_true", help="print the answer in GopherCite's %%<claim>%%(title)%%[quote]%% syntax")
    p.add_argument("--show-trace", action="store_true", help="print every browser step")
    p.set_defaults(func=cmd_ask)


def add_device_args(p) -> None:
    """--device and --dtype for the commands that run models (ask, eval)."""
    p.add_argument("--device", default="auto", help="where the policy and the scoring models run: auto (the first "
                   "CUDA GPU if there is one, else the CPU), cpu, cuda, cuda:N or mps (default: %(default)s)")
    p.add_argument("--dtype", default="float32", help="the LM policy's weights: float32, bfloat16 or float16 "
                   "(bfloat16 on GPUs; default: %(default)s)")


def cmd_ask(args) -> int:
    from citeagent.backend import make_backend, options_from_args
    from citeagent.policies import make_policy
    from citeagent.rollout import browser_config, run_episode

    question = (args.question or "").strip()
    if not question:
        raise ValueError("The question is empty. Usage: citeagent ask \"How do I sort a dict by value?\"")
    if args.max_actions < 2:
        raise ValueError("--max-actions must be at least 2 (a search and an answer).")
    if args.best_of < 1:
        raise ValueError(f"--best-of must be at least 1, got {args.best_of}")
    best = scorer = None
    if args.policy != "baseline" or args.best_of > 1 or args.combined_reward is not None:
        from citeagent.models import resolve_device, torch_dtype

        # models run: a bad --device fails before they load
        args.device = resolve_device(args.device)
        torch_dtype(args.dtype)
    if args.best_of > 1 and args.policy == "baseline":  # fail before loading anything
        from citeagent.policies.best_of_n import not_sampling

        raise ValueError(not_sampling(args.best_of, "baseline"))
    gate = encoder = None
    if args.safety or args.combined_reward is not None:
        from citeagent.safety.features import TextEncoder

        encoder = TextEncoder()  # one MiniLM for the gate and the combined reward
    if args.combined_reward is not None:  # ranks best-of-n; with --safety, also weighs answering against declining
        from citeagent.safety.combined import load_combined_reward, parse_weights

        weights = parse_weights(args.combined_reward)
        weights.support_model = args.reward_model
        scorer = load_combined_reward(weights, device=args.device, encoder=encoder)
    elif args.best_of > 1:
        from citeagent.policies.best_of_n import load_scorer

        scorer = load_scorer(args.reward_model, device=args.device)
    if args.safety:
        from citeagent.safety.gate import load_gate

        gate = load_gate(encoder=encoder)
    backend = make_backend(options_from_args(args))
    policy = make_policy(args.policy, device=args.device, dtype=args.dtype)

    def show(i, obs, action, info):
        print("-" * 80, file=sys.stderr)
        print(obs, file=sys.stderr)
        print(f">>> {action}" + (f"    [rejected: {info['error']}]" if info["error"] else ""), file=sys.stderr)

    config = browser_config(policy, max_actions=args.max_actions)

    def sample(todo):
        if not todo:  # the gate declined the question: the policy never runs
            return []
        if args.best_of > 1:
            from citeagent.policies.best_of_n import best_of_n

            b = best_of_n(backend, policy, [question], args.best_of, scorer, seed=args.seed, batch_size=args.best_of,
                          config=config, temperature=args.temperature)[0]
            return [(b.result, b)]
        return [(run_episode(backend, policy, question, seed=args.seed, config=config,
                             on_step=show if args.show_trace else None), None)]

    from citeagent.safety.gate import gated

    result, best, decision = gated(gate, [question], sample, scorer if args.combined_reward is not None else None)[0]
    if best is not None and args.show_trace:  # the candidates ran interleaved; show the chosen one's steps
        print(f"candidate {best.chosen + 1} of {best.n}:", file=sys.stderr)
        for step in best.result.trace:
            show(0, step["observation"], step["action"], step)
    ans = result.answer
    if args.json:
        out = ans.to_dict() | {"actions": result.n_actions, "invalid_actions": result.n_invalid,
                               "truncated": result.truncated, "seconds": round(result.seconds, 3)}
        if best is not None:
            out["best_of"] = best.to_dict() | {"score": round(best.score, 6)}
        if decision is not None:
            out["safety"] = decision.to_dict()
        print(json.dumps(out, ensure_ascii=False, indent=2))
    elif args.gophercite:
        print(ans.to_gophercite())
    else:
        if result.truncated:
            print(f"(no answer: the agent used all {args.max_actions} actions without ending)")
        if decision is not None and decision.declined:
            print(decision.describe())
        else:
            print(ans.render())
    if best is not None and not args.json:
        from citeagent.policies.best_of_n import describe

        # GopherCite syntax is for machines: the note goes to stderr there
        print(describe(best), file=sys.stderr if args.gophercite else sys.stdout)
    return 0


def _add_browse(sub) -> None:
    from citeagent.backend import add_backend_args

    p = sub.add_parser("browse", help="drive the text browser yourself; episodes are saved as demonstrations")
    add_backend_args(p)
    p.add_argument("--question", default=None, help="the question (asked for if omitted)")
    p.add_argument("--out", default="demonstrations.jsonl", help="JSONL file the episodes are appended to")
    p.add_argument("--max-actions", type=int, default=30)
    p.add_argument("--layout", choices=("default", "cpu"), default="default",
                   help="page layout: cpu = the compact window and result list that `citeagent train bc` "
                        "models are trained with; use it when recording demonstrations for them")
    p.set_defaults(func=cmd_browse)


def cmd_browse(args) -> int:
    from citeagent.backend import make_backend, options_from_args
    from citeagent.browse import browse_loop

    backend = make_backend(options_from_args(args))
    layout = None
    if args.layout == "cpu":
        from citeagent.train import CPU_BROWSER

        layout = CPU_BROWSER
    return browse_loop(backend, question=args.question, out=args.out, max_actions=args.max_actions, corpus=args.corpus,
                       layout=layout)


# Each capability owns its sub-command: (name, help line, module, function adding its parser). Only
# the command being run is built: building one imports its module, and `citeagent --help` should
# not pay for fastapi, SQLAlchemy or torch.
COMMANDS = [
    ("ask", "answer a question with verbatim, numbered citations", "citeagent.cli", "_add_ask"),
    ("browse", "drive the text browser yourself; episodes are saved as demonstrations", "citeagent.cli",
     "_add_browse"),
    ("index", "build and inspect corpus search indexes", "citeenv.index_cli", "add_index_parser"),
    ("serve", "serve a local corpus over HTTP (SearxNG-style /search and HTML pages)", "citeenv.web.cli",
     "add_serve_parser"),
    ("eval", "evaluate a policy (or a file of answers) on a QA set, with citation checking", "citeagent.eval.cli",
     "add_eval_parser"),
    ("label", "human comparisons: the labelling web app, its queue and export", "citeagent.feedback.cli",
     "add_label_parser"),
]


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser for this command line: the command argv names is built in full, the others are
    a help line each (argv None builds every command, e.g. for documentation)."""
    import importlib

    from citeagent.config_flags import parser_class
    from citeagent.train.cli import add_train_parser

    parser = argparse.ArgumentParser(
        prog="citeagent",
        description="A question-answering agent that browses, quotes its evidence verbatim and answers with citations.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=parser_class)
    words = list(argv) if argv is not None else None
    command = words[0] if words else None
    for name, help, module, fn in COMMANDS:
        if words is None or name == command:
            getattr(importlib.import_module(module), fn)(sub)
        else:
            sub.add_parser(name, help=help)
    trainer = None if words is None else words[1] if command == "train" and len(words) > 1 else ""
    add_train_parser(sub, trainer)
    return parser


def _expected_errors() -> tuple[type[BaseException], ...]:
    from citeenv.backends import BrowserError
    from citeenv.corpus import CorpusError

    return (ValueError, FileNotFoundError, PermissionError, RuntimeError, OSError, CorpusError, BrowserError)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except _expected_errors() as e:
        # Expected failures (bad input, missing files) get one line; CITEAGENT_DEBUG=1 shows the traceback.
        if os.environ.get("CITEAGENT_DEBUG") == "1":
            raise
        print(f"citeagent: error: {e}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
