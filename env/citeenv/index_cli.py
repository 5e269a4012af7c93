"""`citeagent index build|info|list`: the index commands, as an argparse subparser.

The citeagent CLI wires them in with `add_index_parser(subparsers)` and then calls
`args.func(args)`, which returns the exit status. Bad input prints one `error:` line (no
traceback) and returns 2; `python -m citeenv.index_cli index ...` runs them without citeagent.
Each sub-command's flags are its config dataclass's fields (citeenv.cli_flags).
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from functools import partial

from citeenv.cli_flags import config_from_args, config_parser_class, parser_class
from citeenv.corpus import CorpusError
from citeenv.search.encoder import BACKENDS as ENCODER_BACKENDS


@dataclass
class IndexCorpusConfig:
    corpus: str = field(default="pydocs", metadata={"help": (
        "corpus name or path: pydocs, hotpotqa, hotpotqa:<_id>, jsonl:<path>, <path>.jsonl, hf:<name>[:<split>] "
        "(see `citeagent index list`)")})


@dataclass
class IndexBuildConfig(IndexCorpusConfig):
    kinds: str = field(default="bm25", metadata={"help": "comma-separated: bm25, dense, hybrid (= both)"})
    embedder: str | None = field(default=None, metadata={"help": (
        "dense embedder: 'minilm' (bundled, offline; the default) or a Hugging Face model name")})
    encoder: str = field(default="auto", metadata={"choices": ("auto", *ENCODER_BACKENDS), "help": (
        "dense: how passages and queries are embedded (citeenv.search.encoder); auto = onnx when onnxruntime is "
        "installed, else torch; all but onnx-int8 give the same vectors")})
    out: str | None = field(default=None, metadata={"help": "index directory (default: "
                                                              "$CITEAGENT_HOME/indexes/<corpus>)"})
    column_map: str | None = field(default=None, metadata={"metavar": "FIELD=COLUMN,...", "help": (
        "for JSONL/HF corpora: which columns hold id,title,url,text,links, e.g. id=doc_id,text=body")})
    chunk_chars: int = field(default=600, metadata={"help": "maximum passage length in characters"})
    split: str | None = field(default=None, metadata={"help": (
        "hotpotqa: which split of the records (default validation); hf: specs say hf:NAME:SPLIT")})
    strict: bool = field(default=False, metadata={"action": "store_true", "help": (
        "fail on the first bad JSONL line instead of skipping it")})
    quiet: bool = field(default=False, metadata={"action": "store_true", "help": "no progress bars"})

    def __post_init__(self):
        if self.chunk_chars < 50:
            raise ValueError(f"--chunk-chars {self.chunk_chars} is too small; use 50 or more (default 600).")


@dataclass
class IndexInfoConfig(IndexCorpusConfig):
    out: str | None = field(default=None, metadata={"help": "the index directory, if not the default one"})
    json: bool = field(default=False, metadata={"action": "store_true", "help": "print the manifest as JSON"})


def add_index_parser(subparsers) -> argparse.ArgumentParser:
    make = config_parser_class(subparsers)
    parser = subparsers.add_parser("index", help="build and inspect corpus search indexes",
                                   description="Build and inspect corpus search indexes.")
    sub = parser.add_subparsers(dest="index_command", metavar="{build,info,list}", parser_class=make)
    sub.required = True

    build = sub.add_parser("build", dataclass_types=[IndexBuildConfig], help="build the search index of a corpus",
                           description="Build (or rebuild) the search index of a corpus.")
    build.set_defaults(func=partial(_run, cli_index_build, IndexBuildConfig))

    info = sub.add_parser("info", dataclass_types=[IndexInfoConfig], help="show what an index holds",
                          description="Show what a built index holds.")
    info.set_defaults(func=partial(_run, cli_index_info, IndexInfoConfig))

    lst = sub.add_parser("list", help="list known corpora and built indexes")
    lst.set_defaults(func=cli_index_list)
    return parser


def _run(fn, config_class, args) -> int:
    try:
        return fn(config_from_args(args, config_class))
    except (CorpusError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def cli_index_build(config: IndexBuildConfig) -> int:
    from citeenv.index import build_index

    opts = {"split": config.split} if config.split else {}
    if config.encoder != "auto":
        from citeenv.search.dense import DenseConfig

        opts["dense_config"] = DenseConfig(encoder=config.encoder)
    out = build_index(config.corpus, out_dir=config.out, kinds=config.kinds, embedder=config.embedder,
                      column_map=config.column_map, chunk_chars=config.chunk_chars, show_progress=not config.quiet,
                      strict=config.strict, **opts)
    _print_info(out, as_json=False)
    return 0


def cli_index_info(config: IndexInfoConfig) -> int:
    return _print_info(config.out or config.corpus, as_json=config.json)


def _print_info(spec_or_dir, as_json: bool) -> int:
    from citeenv.index import index_info

    info = index_info(spec_or_dir)
    if as_json:
        print(json.dumps(info, indent=2, ensure_ascii=False))
        return 0
    print(f"index      {info['directory']}")
    print(f"corpus     {info['spec']} ({info['documents']:,} documents, {info['passages']:,} passages, "
          f"chunks of {info['chunk_chars']} chars)")
    for kind, k in info["kinds"].items():
        extra = f", embedder {k['embedder']} ({k['dim']}-d)" if kind == "dense" else ""
        print(f"{kind:<10} built {k['built_at']} in {k['seconds']} s{extra}")
    print(f"size       {info['bytes'] / 1e6:.1f} MB, created {info['created']}")
    return 0


def cli_index_list(args) -> int:
    from citeenv.index import list_indexes
    from citeenv.sources import known_corpora

    print("Corpora:")
    for spec, what in known_corpora().items():
        print(f"  {spec:<22} {what}")
    built = list_indexes()
    print("Built indexes:" if built else "Built indexes: none (citeagent index build --corpus NAME)")
    for b in built:
        print(f"  {b['spec']:<30} {b['passages']:>9,} passages  {','.join(b['kinds']):<11} {b['directory']}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="citeagent")
    add_index_parser(parser.add_subparsers(dest="command", required=True, parser_class=parser_class))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
