"""`citeagent serve`: serve a local corpus as a SearxNG-compatible search endpoint with HTML pages.

    citeagent serve --corpus pydocs [--search bm25] [--port 8765]

and then browse it like the web:  citeagent ... --web --search-url http://127.0.0.1:8765
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field

from citeenv.cli_flags import config_from_args, config_parser_class


class PortError(argparse.ArgumentTypeError, ValueError):
    """Not a TCP port. As a flag's type, argparse reports it as a usage error with this message;
    from code it is a ValueError like any other bad config value."""


class Port(int):
    """A TCP port, 0 (any free port) to 65535. A config field typed Port gets it as its flag's
    type, so `--port 99999` is refused while parsing, naming the value."""

    def __new__(cls, value=0):
        try:
            port = int(value)
        except (TypeError, ValueError):
            port = -1
        if not 0 <= port <= 65535:
            raise PortError(f"{str(value)[:20]!r} is not a port: use a number from 1 to 65535 (0 = any free port)")
        return super().__new__(cls, port)


def port_number(text: str) -> int:
    """An argparse type: a TCP port, 0 (any free port) to 65535."""
    return Port(text)


# citeenv.index.SEARCH_KINDS, written out: importing citeenv.index loads the search libraries
# just to build a parser.
SEARCH_KINDS = ("bm25", "dense", "hybrid")


@dataclass
class ServeConfig:
    corpus: str = field(default="pydocs", metadata={"help": "corpus name or JSONL path, as for the other commands"})
    search: str = field(default="bm25", metadata={"help": "retrieval used for /search", "choices": SEARCH_KINDS})
    host: str = field(default="127.0.0.1", metadata={"help": "address to listen on (127.0.0.1: this machine only)"})
    port: Port = field(default=Port(8765), metadata={"help": "port to listen on (0 = any free port)"})

    def __post_init__(self):
        self.port = Port(self.port)


def add_serve_parser(subparsers) -> argparse.ArgumentParser:
    config_parser_class(subparsers)
    p = subparsers.add_parser(
        "serve", dataclass_types=[ServeConfig],
        help="serve a local corpus over HTTP (SearxNG-style /search and HTML pages)",
        description="Serve a local corpus over HTTP: /search?q=...&format=json (SearxNG format), "
                    "/doc/<id> and the documents' own url paths as HTML pages, and /healthz.",
    )
    p.set_defaults(func=run_serve)
    return p


def run_serve(args) -> int:
    from citeenv.corpus import CorpusError
    from citeenv.index import open_index
    from citeenv.web.serve import serve_corpus

    config = config_from_args(args, ServeConfig)
    try:
        corpus, searcher = open_index(config.corpus, kind=config.search, build_if_missing=True)
    except CorpusError as e:
        print(f"citeagent serve: {e}", file=sys.stderr)
        return 1
    try:
        server, base_url = serve_corpus(corpus, searcher, host=config.host, port=config.port)
    except OSError as e:
        print(f"citeagent serve: cannot listen on {config.host}:{config.port}: {e.strerror or e}", file=sys.stderr)
        return 1
    print(f"Serving {config.corpus} at {base_url}  (search: {base_url}/search?q=...&format=json)", flush=True)
    print(f"Browse it with: --web --search-url {base_url}   Stop with Ctrl-C.", flush=True)
    try:
        server.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
    return 0
