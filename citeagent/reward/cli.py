"""`citeagent train rm`: train a reward model on comparisons and report its held-out accuracy."""
from __future__ import annotations

import argparse
import dataclasses
import sys

from citeagent.reward.config import RMConfig

HELP = {
    "data": "comma-separated sources: webgpt, hh-rlhf[:split+split], lfqa, hotpotqa-synth[:N], hotpotqa-gold:PATH, "
            "or a JSONL/datasets path in the webgpt_comparisons schema (e.g. `citeagent label export`)",
    "backbone": "minilm (offline default), tiny (tests), policy[:NAME] (policy LM + scalar head), or a HF name/path",
    "out": "directory the model and its report are saved to (default: $CITEAGENT_HOME/reward/minilm-default "
           "for minilm)",
    "label_mode": "webgpt: ties are 0.5 and every other score a hard label (WebGPT); graded: p = (1 + score_0) / 2",
    "heldout_frac": "fraction of each source's questions held out for the report",
    "exclude_questions": "a JSONL data set (one {\"question\": ..., \"answers\": [...]} a line, e.g. the one "
                         "`citeagent eval` will test on): every pair about one of its questions is dropped from "
                         "every source",
    "max_train_pairs": "at most this many training pairs per source (default all)",
    "max_heldout_pairs": "at most this many held-out pairs per source (default all)",
    "threads": "torch CPU threads (0: torch's default)",
    "n_boot": "bootstrap resamples for the accuracy intervals",
}


def _parse_optional(kind):
    def parse(text: str):
        return None if text.lower() in ("none", "") else kind(text)

    parse.__name__ = kind.__name__
    return parse


def add_config_args(parser: argparse.ArgumentParser, cls) -> None:
    """One --flag per dataclass field, typed from the field's default; the dataclass stays the one
    place defaults live."""
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        default = f.default
        kw = {"default": default, "help": (HELP.get(f.name, "") + f" (default: {default})").strip(), "dest": f.name}
        if isinstance(default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
        elif "None" in str(f.type):
            base = float if "float" in str(f.type) else int
            parser.add_argument(flag, type=_parse_optional(base), **kw)
        else:
            parser.add_argument(flag, type=type(default), **kw)


def config_from_args(args, cls):
    return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls)})


def add_train_rm_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "rm", help="train a Bradley-Terry reward model on comparisons (TRL RewardTrainer)",
        description="Train a reward model on comparisons of cited answers, save it, and report pairwise "
                    "accuracy (95% bootstrap CI), calibration and score distribution on held-out questions "
                    "of every source.",
    )
    add_config_args(p, RMConfig)
    p.add_argument("--eval-only", action="store_true",
                   help="do not train: evaluate the model already in --out on the held-out pairs of --data")
    p.set_defaults(func=cmd_train_rm)
    return p


def cmd_train_rm(args) -> int:
    cfg = config_from_args(args, RMConfig)
    if args.eval_only:
        return _eval_only(cfg)
    from citeagent.reward.sources import load_sources

    sources = load_sources(cfg.data, cfg.exclude_questions)  # bad data stops here, before torch is even imported
    from citeagent.reward.trainer import train_reward_model

    train_reward_model(cfg, sources=sources)
    print(cfg.out_dir() / "report.md")
    return 0


def _eval_only(cfg: RMConfig) -> int:
    """Re-measure a saved model on the held-out pairs of --data; its report's held-out part is replaced."""
    import json

    from citeagent.reward.model import load_reward_model
    from citeagent.reward.report import evaluate_sources, markdown_table, write_report
    from citeagent.reward.sources import load_sources, split_heldout, subsample

    out = cfg.out_dir()
    if cfg.threads:
        import torch

        torch.set_num_threads(cfg.threads)
    rm = load_reward_model(out)
    heldout = {}
    for name, (comps, _stats) in load_sources(cfg.data, cfg.exclude_questions).items():
        _train, he = split_heldout(comps, cfg.heldout_frac, seed=cfg.seed)
        heldout[name] = subsample(he, cfg.max_heldout_pairs, cfg.seed)
    results = evaluate_sources(rm, heldout, cfg.label_mode, cfg.n_boot, cfg.seed)
    report = json.loads((out / "report.json").read_text()) if (out / "report.json").is_file() else {}
    report.update(heldout=results, evaluated_on=cfg.data)
    write_report(report, out)
    print(markdown_table(results))
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m citeagent.reward.cli ...`, the same as `citeagent train rm ...`."""
    from citeagent.cli import main as citeagent_main

    return citeagent_main(["train", "rm", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
