"""`citeagent index build|info|list`: the index commands, as an argparse subparser.

The citeagent CLI wires them in with `add_index_parser(subparsers)` and then calls
`args.func(args)`, which returns the exit status. Bad input prints one `error:` line (no
traceback) and returns 2; `python -m env.index_cli ...` runs them standalone.
"""
from __future__ import annotations

import argparse
import json
import sys

from citeenv.corpus import CorpusError
from citeenv.search.encoder import BACKENDS as ENCODER_BACKENDS


def add_index_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("index", help="build and inspect corpus search indexes",
                                   description="Build and inspect corpus search indexes.")
    sub = parser.add_subparsers(dest="index_command", metavar="{build,info,list}")
    sub.required = True

    build = sub.add_parser("build", help="build the search index of a corpus",
                           description="Build (or rebuild) the search index of a corpus.")
    _corpus_arg(build)
    build.add_argument("--kinds", default="bm25", help="comma-separated: bm25, dense, hybrid (= both); default bm25")
    build.add_argument("--embedder", default=None,
                       help="dense embedder: 'minilm' (bundled, offline; default) or a Hugging Face model name")
    build.add_argument("--encoder", default="auto", choices=("auto", *ENCODER_BACKENDS),
                       help="dense: how passages and queries are embedded (citeenv.search.encoder); auto = onnx "
                            "when onnxruntime is installed, else torch; all but onnx-int8 give the same vectors")
    build.add_argument("--out", default=None, help="index directory (default: $CITEAGENT_HOME/indexes/<corpus>)")
    build.add_argument("--column-map", default=None, metavar="FIELD=COLUMN,...",
                       help="for JSONL/HF corpora: which columns hold id,title,url,text,links, e.g. id=doc_id,text=body")
    build.add_argument("--chunk-chars", type=int, default=600, help="maximum passage length in characters")
    build.add_argument("--split", default=None,
                       help="hotpotqa: which split of the records (default validation); hf: specs say hf:NAME:SPLIT")
    build.add_argument("--strict", action="store_true", help="fail on the first bad JSONL line instead of skipping it")
    build.add_argument("--quiet", action="store_true", help="no progress bars")
    build.set_defaults(func=cli_index_build)

    info = sub.add_parser("info", help="show what an index holds", description="Show what a built index holds.")
    _corpus_arg(info)
    info.add_argument("--out", default=None, help="the index directory, if not the default one")
    info.add_argument("--json", action="store_true", help="print the manifest as JSON")
    info.set_defaults(func=cli_index_info)

    lst = sub.add_parser("list", help="list known corpora and built indexes")
    lst.set_defaults(func=cli_index_list)
    return parser


def _corpus_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--corpus", default="pydocs",
                   help="corpus name or path: pydocs (default), hotpotqa, hotpotqa:<_id>, jsonl:<path>, "
                        "<path>.jsonl, hf:<name>[:<split>] (see `citeagent index list`)")


def _run(fn, args) -> int:
    try:
        return fn(args)
    except CorpusError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def cli_index_build(args) -> int:
    def go(args):
        from citeenv.index import build_index

        if args.chunk_chars < 50:
            raise CorpusError(f"--chunk-chars {args.chunk_chars} is too small; use 50 or more (default 600).")
        opts = {"split": args.split} if args.split else {}
        if args.encoder != "auto":
            from citeenv.search.dense import DenseConfig

            opts["dense_config"] = DenseConfig(encoder=args.encoder)
        out = build_index(args.corpus, out_dir=args.out, kinds=args.kinds, embedder=args.embedder,
                          column_map=args.column_map, chunk_chars=args.chunk_chars, show_progress=not args.quiet,
                          strict=args.strict, **opts)
        _print_info(out, as_json=False)
        return 0

    return _run(go, args)


def cli_index_info(args) -> int:
    return _run(lambda a: _print_info(a.out or a.corpus, as_json=a.json), args)


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
    add_index_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
