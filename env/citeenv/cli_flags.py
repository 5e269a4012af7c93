"""Config dataclasses as command-line flags for citeenv's own commands (`index`, `serve`).

A command's options are a dataclass: a field per flag (`--chunk-chars` and `--chunk_chars` from
`chunk_chars`), its default, `field(metadata={"help": ...})` for the help (other metadata keys go
to argparse's add_argument as they are: choices, metavar, nargs, const, and action="store_true"
for a plain switch), and `__post_init__` raising ValueError on bad values.

The command registers with `sub.add_parser(name, dataclass_types=[Config])`, so `sub` must make
parsers that take dataclass_types. Inside citeagent it does: citeagent.config_flags builds them
with transformers' HfArgumentParser, the one mechanism every `citeagent` command uses. citeenv
installs without transformers and never imports citeagent, so when a caller hands over plain
argparse sub-parsers (`python -m citeenv.index_cli`, a test) they get `parser_class` below: the
same fields, read the same way, without transformers.
"""
from __future__ import annotations

import argparse
import dataclasses
import typing


def flag_names(field: dataclasses.Field) -> list[str]:
    """`--chunk_chars` and `--chunk-chars`: the names HfArgumentParser gives a field."""
    names = [f"--{field.name}"]
    if "_" in field.name:
        names.append(f"--{field.name.replace('_', '-')}")
    return names


def config_from_args(args: argparse.Namespace, cls):
    """The config dataclass instance the parsed flags describe (its __post_init__ checks them)."""
    return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if f.init})


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Each flag's help ends with its default, as HfArgumentParser shows them, except an empty
    one (None, ""): the help says what happens without the flag."""

    def _get_help_string(self, action):
        empty = action.default is None or (isinstance(action.default, str) and not action.default)
        return action.help if empty else super()._get_help_string(action)


def parser_class(dataclass_types=None, **kwargs) -> argparse.ArgumentParser:
    """An argparse parser holding the dataclasses' fields as flags, for citeenv without citeagent.
    It reads only what citeenv's configs use: str/int/float fields (Optional too), switches."""
    kwargs.setdefault("formatter_class", HelpFormatter)
    parser = argparse.ArgumentParser(**kwargs)
    for cls in dataclass_types or ():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if not f.init:
                continue
            kw = dict(f.metadata)
            kind = hints[f.name]
            if kind is bool:
                kw.setdefault("action", "store_true")
            elif "action" not in kw:
                kw["type"] = next((t for t in typing.get_args(kind) if t is not type(None)), kind)
            if f.default is dataclasses.MISSING:
                kw["required"] = True
            else:
                kw["default"] = f.default
            parser.add_argument(*flag_names(f), **kw)
    return parser


def config_parser_class(subparsers):
    """The parser_class `subparsers` makes its parsers with, able to take dataclass_types: the one
    its maker chose (citeagent's), or citeenv's own where that was plain argparse."""
    # argparse keeps the class on the private _parser_class and offers no public way to read it;
    # sub-sub-commands (`index build`) need the same one as their parent's.
    if subparsers._parser_class is argparse.ArgumentParser:
        subparsers._parser_class = parser_class
    return subparsers._parser_class
