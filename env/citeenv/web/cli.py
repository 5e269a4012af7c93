"""`citeagent serve`: serve a local corpus as a SearxNG-compatible search endpoint with HTML pages.

    citeagent serve --corpus pydocs [--search bm25] [--port 8765]

and then browse it like the web:  citeagent ... --web --search-url http://127.0.0.1:8765
"""
from __future__ import annotations

import argparse
import sys


def port_number(text: str) -> int:
    """An argparse type: a TCP port, 0 (any free port) to 65535."""
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text[:20]!r} is not a port: use a number from 1 to 65535 (0 = any free port)")
    return port


def add_serve_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "serve", help="serve a local corpus over HTTP (SearxNG-style /search and HTML pages)",
        description="Serve a local corpus over HTTP: /search?q=...&format=json (SearxNG format), "
                    "/doc/<id> and the documents' own url paths as HTML pages, and /healthz.",
    )
    p.add_argument("--corpus", default="pydocs", help="corpus name or JSONL path, as for the other commands; default pydocs")
    p.add_argument("--search", default="bm25", choices=["bm25", "dense", "hybrid"], help="retrieval used for /search; default bm25")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on; default 127.0.0.1 (this machine only)")
    p.add_argument("--port", type=port_number, default=8765, help="port to listen on (0 = any free port); default 8765")
    p.set_defaults(func=run_serve)
    return p


def run_serve(args) -> int:
    from citeenv.corpus import CorpusError
    from citeenv.index import open_index
    from citeenv.web.serve import serve_corpus

    try:
        corpus, searcher = open_index(args.corpus, kind=args.search, build_if_missing=True)
    except CorpusError as e:
        print(f"citeagent serve: {e}", file=sys.stderr)
        return 1
    try:
        server, base_url = serve_corpus(corpus, searcher, host=args.host, port=args.port)
    except OSError as e:
        print(f"citeagent serve: cannot listen on {args.host}:{args.port}: {e.strerror or e}", file=sys.stderr)
        return 1
    print(f"Serving {args.corpus} at {base_url}  (search: {base_url}/search?q=...&format=json)", flush=True)
    print(f"Browse it with: --web --search-url {base_url}   Stop with Ctrl-C.", flush=True)
    try:
        server.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
    return 0
