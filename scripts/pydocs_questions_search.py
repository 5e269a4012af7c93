"""How often the env's default search finds a generated question's gold page. Prints JSON.

    .venv/bin/python scripts/pydocs_questions_search.py --questions pydocs_questions.jsonl [--k 8]

For each question of a `citeagent train pydocs-questions` file, the question text is searched
over the pydocs BM25 index, and two rates are counted, overall and per template:

    gold_url_in_top_k       a gold sentence's page is among the top k results of the env's local
                            backend (what the browser's "Search" shows: one result per document);
                            gold_url_at_1: it is the first result
    gold_passage_in_top_k   a gold sentence starts inside one of the top k passages the searcher
                            ranks (the passage a result would open the page at)

It also checks that every gold sentence's offsets still select its text in the index's copy of
the documents (support_offsets_match): an index built by another Python would not.
Build the index first: citeagent index build --corpus pydocs
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict


def main(argv: list[str] | None = None) -> int:
    from citeagent.data.gold_questions import load_gold_questions
    from citeenv.index import open_index
    from citeenv.local import LocalBackend

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--questions", required=True, help="JSONL from citeagent train pydocs-questions")
    parser.add_argument("--index", default="pydocs", help="corpus spec or index directory (default: pydocs)")
    parser.add_argument("--k", type=int, default=8, help="results looked at (default: 8)")
    args = parser.parse_args(argv)
    if args.k < 1:
        parser.error(f"--k must be at least 1 (got {args.k})")
    records = load_gold_questions(args.questions)
    corpus, searcher = open_index(args.index, kind="bm25")
    backend = LocalBackend(corpus, searcher)
    url_hits, first_hits, passage_hits, totals = defaultdict(int), defaultdict(int), defaultdict(int), defaultdict(int)
    offsets_ok = sum(_offsets_match(corpus, s) for r in records for s in r["support"])
    t0 = time.perf_counter()
    for record in records:
        gold = {s["url"] for s in record["support"]}
        ranked = [r.url for r in backend.search(record["question"], k=args.k)]
        passages = [corpus.passage(h.passage_id) for h in searcher.search(record["question"], args.k)]
        in_passage = any(p is not None and p.doc_id == s["doc_id"] and p.start <= s["start"] < p.end
                         for p in passages for s in record["support"])
        for key in ("all", record.get("template", "?")):
            totals[key] += 1
            url_hits[key] += bool(gold & set(ranked))
            first_hits[key] += bool(ranked) and ranked[0] in gold
            passage_hits[key] += in_passage
    seconds = time.perf_counter() - t0
    out = {
        "questions": len(records), "k": args.k, "index": args.index,
        f"gold_url_in_top_{args.k}": {key: round(url_hits[key] / totals[key], 4) for key in sorted(totals)},
        "gold_url_at_1": {key: round(first_hits[key] / totals[key], 4) for key in sorted(totals)},
        f"gold_passage_in_top_{args.k}": {key: round(passage_hits[key] / totals[key], 4) for key in sorted(totals)},
        "counts": dict(sorted(totals.items())),
        "support_offsets_match": round(offsets_ok / max(1, sum(len(r["support"]) for r in records)), 4),
        "seconds_per_question": round(seconds / max(1, len(records)), 5),
    }
    json.dump(out, sys.stdout, indent=2)
    print()
    return 0


def _offsets_match(corpus, support: dict) -> bool:
    from citeenv.documents import normalize_ws

    doc = corpus.get(support.get("doc_id", ""))
    return doc is not None and normalize_ws(doc.text[support["start"]:support["end"]]) == support["text"]


if __name__ == "__main__":
    raise SystemExit(main())
