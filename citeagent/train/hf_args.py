"""Trainer sub-commands whose flags come from a config dataclass through transformers'
HfArgumentParser: every field a flag (--field-name or --field_name), its default and help from the
dataclass, so the dataclass stays the one place both live."""
from __future__ import annotations

import argparse
from dataclasses import fields


def add_dataclass_parser(sub, name: str, cls, func, **kw) -> argparse.ArgumentParser:
    from transformers import HfArgumentParser

    p = sub.add_parser(name, parents=[HfArgumentParser(cls, add_help=False)], **kw)
    p.set_defaults(func=func)
    return p


def config_from_args(args: argparse.Namespace, cls):
    return cls(**{f.name: getattr(args, f.name) for f in fields(cls)})
