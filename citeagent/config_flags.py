"""Config dataclasses as command-line flags: the one way every `citeagent` command gets its
options.

transformers' HfArgumentParser (the parser TRL's scripts use) turns each field of a dataclass
into a flag: `--lora-layers` (and `--lora_layers`) from `lora_layers`, typed from the field's
annotation, the default from the field, the help from `field(metadata={"help": ...})`, and a
`--no-x` twin for a bool that defaults to True. The dataclass stays the one place an option and
its default are written; its `__post_init__` checks the values and raises ValueError with a
message naming the flag, which the CLI prints as one line.

Other metadata keys go to argparse as they are (choices, metavar, nargs="?" with const). One more:
`action="store_true"` makes a bool a plain switch. HfArgumentParser's own bool flags take an
optional value (`--json true`), so `citeagent ask --json "question"` would read the question as
--json's value; commands with a positional argument want switches.

A command may take several dataclasses, each a group of flags: `citeagent ask` is AskConfig plus
the backend options (citeagent.backend.BackendOptions, which `browse` takes too) and
DeviceOptions below, for any command that runs models.

transformers is imported only when a command with a config is built, so `citeagent --help`
stays fast: sub-parsers come from `parser_class`, which makes a plain ArgumentParser unless the
caller passes `dataclass_types`:

    sub = parser.add_subparsers(parser_class=parser_class)
    p = sub.add_parser("ppo", dataclass_types=[PPOConfig], help="...")
    p.set_defaults(func=lambda args: run(config_from_args(args, PPOConfig)))

citeenv's commands (`index`, `serve`) register through the same `sub`; citeenv.cli_flags has the
plain-argparse reading of their configs it uses when installed without citeagent.
"""
from __future__ import annotations

import argparse
import functools
from dataclasses import dataclass, field

# citeenv.cli_flags is imported inside the functions: importing the citeenv package registers its
# gymnasium environment, which loads numpy, and `citeagent --help` imports this module.


def parser_class(dataclass_types=None, **kwargs) -> argparse.ArgumentParser:
    """An argparse sub-parser; with dataclass_types, an HfArgumentParser holding their fields."""
    if not dataclass_types:
        return argparse.ArgumentParser(**kwargs)
    from citeenv.cli_flags import HelpFormatter

    kwargs.setdefault("formatter_class", HelpFormatter)
    return _config_parser()(dataclass_types, **kwargs)


def config_from_args(args: argparse.Namespace, cls):
    """The config dataclass instance the parsed flags describe (its __post_init__ checks them)."""
    from citeenv.cli_flags import config_from_args

    return config_from_args(args, cls)


@functools.cache
def _config_parser():
    from transformers import HfArgumentParser

    from citeenv.cli_flags import flag_names

    class ConfigParser(HfArgumentParser):
        @staticmethod
        def _parse_dataclass_field(parser, field):
            if field.metadata.get("action") == "store_true":
                parser.add_argument(*flag_names(field), default=field.default, **field.metadata)
            else:
                HfArgumentParser._parse_dataclass_field(parser, field)

    return ConfigParser


@dataclass
class DeviceOptions:
    """Where models run, for the commands that run them. The values are checked (against torch)
    where a model is about to load: a command that loads none should not pay for importing torch."""

    _argument_group_name = "where models run"  # HfArgumentParser's heading for these flags

    device: str = field(default="auto", metadata={"help": (
        "where the policy and the scoring models run: auto (the first CUDA GPU if there is one, else the CPU), "
        "cpu, cuda, cuda:N or mps")})
    dtype: str = field(default="float32", metadata={"help": "the LM policy's weights: float32, bfloat16 or float16 "
                                                            "(bfloat16 on GPUs)"})
