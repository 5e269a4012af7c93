"""Config dataclasses as command-line flags: the one way every `citeagent` command that has a
config dataclass gets its options.

transformers' HfArgumentParser (the parser TRL's scripts use) turns each field of a dataclass
into a flag: `--lora-layers` (and `--lora_layers`) from `lora_layers`, typed from the field's
annotation, the default from the field, the help from `field(metadata={"help": ...})`, and a
`--no-x` twin for a bool that defaults to True. The dataclass stays the one place an option and
its default are written; its `__post_init__` checks the values and raises ValueError with a
message naming the flag, which the CLI prints as one line.

transformers is imported only when a command with a config is built, so `citeagent --help`
stays fast: sub-parsers come from `parser_class`, which makes a plain ArgumentParser unless the
caller passes `dataclass_types`:

    sub = parser.add_subparsers(parser_class=parser_class)
    p = sub.add_parser("ppo", dataclass_types=[PPOConfig], help="...")
    p.set_defaults(func=lambda args: run(config_from_args(args, PPOConfig)))
"""
from __future__ import annotations

import argparse
import dataclasses


def parser_class(dataclass_types=None, **kwargs) -> argparse.ArgumentParser:
    """An argparse sub-parser; with dataclass_types, an HfArgumentParser holding their fields."""
    if not dataclass_types:
        return argparse.ArgumentParser(**kwargs)
    from transformers import HfArgumentParser

    return HfArgumentParser(dataclass_types, **kwargs)


def config_from_args(args: argparse.Namespace, cls):
    """The config dataclass instance the parsed flags describe (its __post_init__ checks them)."""
    return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if f.init})

