"""Search latency and index-build throughput of env/ against the bare libraries. Prints JSON.

    .venv/bin/python scripts/bench_search.py                  # 1,000,000 passages: ~20 min, ~5 GB
    .venv/bin/python scripts/bench_search.py --quick          # a smoke run in about a minute

Latency (milliseconds, p50/p90 over --queries distinct queries, one query at a time) over a
pooled synthetic corpus of --passages passages: Zipf-distributed words whose most frequent
ranks are the English stopwords, as in real text, cut into passages by the real chunker; random
unit vectors stand in for the passages' embeddings (queries are embedded by the real MiniLM).

    bm25s_retrieve          bare `retriever.retrieve(tokens)` on pre-tokenised queries
    bm25s_tokenize_retrieve bare `bm25s.tokenize` + `retrieve`, the library's documented use
    faiss_search            bare `index.search` on pre-embedded queries (the same faiss index),
                            on one thread as ours runs it; faiss_search_default_threads: as is
    encode_faiss_search     bare sentence-transformers `model.encode` + `index.search` (what a
                            dense query cost before citeenv.search.encoder)
    encoder                 our encoder alone, `Encoder.encode([q])` (DenseConfig's backend)
    bm25 / dense / hybrid   our Searcher.search
    backend_bm25 / backend_hybrid   LocalBackend.search (one result per document)
    env_search_bm25         TextBrowserEnv.step("Search <q>") over LocalBackend(bm25)

Build throughput (passages/s): our BM25 build of the whole corpus; ours vs bare bm25s
(`tokenize` + `index`) on --build-sample passages; our dense build vs bare
`SentenceTransformer.encode` on up to --encode-passages real pydocs passages.
--encoder picks the encoder backend of our dense search (citeenv.search.encoder; default auto).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from citeenv.corpus import Corpus  # noqa: E402
from citeenv.documents import Document  # noqa: E402


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --- the synthetic corpus -------------------------------------------------------------------------

def synthetic_vocabulary(size: int, rng: np.random.Generator) -> list[str]:
    """English stopwords first (the most frequent ranks), then pronounceable made-up words."""
    from bm25s.stopwords import STOPWORDS_EN

    words = list(dict.fromkeys(STOPWORDS_EN))
    seen = set(words)
    consonants, vowels = list("bcdfghjklmnprstvwz"), list("aeiou")
    while len(words) < size:
        n = int(rng.integers(2, 5))
        w = "".join(rng.choice(consonants) + rng.choice(vowels) for _ in range(n))
        if w not in seen:
            seen.add(w)
            words.append(w)
    return words


def synthetic_corpus(n_passages: int, seed: int = 0, vocab_size: int = 100_000, zipf_s: float = 1.05) -> Corpus:
    rng = np.random.default_rng(seed)
    vocab = np.array(synthetic_vocabulary(vocab_size, rng), dtype=object)
    p = 1.0 / np.arange(1, vocab_size + 1) ** zipf_s
    cdf = np.cumsum(p / p.sum())
    # Documents of ~2 passages: 170 words in sentences of 6-16 words, in two paragraphs.
    words_per_doc = 170
    docs: list[Document] = []
    n_docs = n_passages // 2 + 1
    batch = 20_000
    for start in range(0, n_docs, batch):
        m = min(batch, n_docs - start)
        ids = np.searchsorted(cdf, rng.random((m, words_per_doc)))
        cuts = rng.integers(6, 17, size=(m, 20)).cumsum(axis=1)
        for j in range(m):
            words = vocab[ids[j]]
            sentences, prev = [], 0
            for c in cuts[j]:
                if c >= words_per_doc:
                    break
                sentences.append(" ".join(words[prev:c]).capitalize() + ".")
                prev = c
            sentences.append(" ".join(words[prev:]).capitalize() + ".")
            half = len(sentences) // 2
            text = " ".join(sentences[:half]) + "\n\n" + " ".join(sentences[half:])
            i = start + j
            docs.append(Document(f"syn{i}", f"Synthetic page {i}", f"https://synthetic.test/{i}", text))
    corpus = Corpus(docs, name="synthetic")
    log(f"synthetic corpus: {len(corpus):,} documents, {len(corpus.passages):,} passages")
    return corpus


def make_queries(corpus: Corpus, n: int, seed: int = 1) -> list[str]:
    """2-5 content words of a random passage each: stopwords dropped, as a searcher would type."""
    from bm25s.stopwords import STOPWORDS_EN

    stop = set(STOPWORDS_EN)
    rng = np.random.default_rng(seed)
    queries, seen = [], set()
    while len(queries) < n:
        words = [w.strip(".").lower() for w in corpus.passages[int(rng.integers(len(corpus.passages)))].text.split()]
        words = [w for w in words if w not in stop]
        if len(words) < 5:
            continue
        q = " ".join(rng.choice(words, size=int(rng.integers(2, 6)), replace=False))
        if q not in seen:
            seen.add(q)
            queries.append(q)
    return queries


# --- timing ----------------------------------------------------------------------------------------

def timed(fn, items, warmup: int = 5) -> dict:
    for x in items[:warmup]:
        fn(x)
    ms = []
    for x in items:
        t = time.perf_counter()
        fn(x)
        ms.append((time.perf_counter() - t) * 1000)
    return summary(ms)


def summary(ms: list[float]) -> dict:
    ms = sorted(ms)
    return {"p50": round(statistics.median(ms), 3), "p90": round(ms[int(0.9 * (len(ms) - 1))], 3),
            "mean": round(statistics.fmean(ms), 3), "n": len(ms)}


def rate(n: int, seconds: float) -> float:
    return round(n / seconds, 1) if seconds > 0 else float("inf")


# --- the benchmark -----------------------------------------------------------------------------------

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--passages", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--build-sample", type=int, default=100_000, help="passages for ours-vs-bare bm25s build")
    ap.add_argument("--encode-passages", type=int, default=2000, help="real pydocs passages for the encoder")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--encoder", default="auto", help="citeenv.search.encoder backend of our dense search")
    ap.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    args = ap.parse_args(argv)
    if args.quick:
        args.passages, args.queries = min(args.passages, 20_000), min(args.queries, 30)
        args.build_sample, args.encode_passages = min(args.build_sample, 5_000), min(args.encode_passages, 64)

    import bm25s
    import faiss
    import Stemmer

    from citeenv.local import LocalBackend
    from citeenv.search.bm25 import BM25Searcher, passage_text
    from citeenv.search.dense import DenseConfig, DenseSearcher, get_encoder, one_thread
    from citeenv.search.embedder import load_embedder
    from citeenv.search.hybrid import HybridSearcher
    from citeenv.sources.pydocs import build_pydocs

    out: dict = {
        "command": "scripts/bench_search.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load_avg_at_start": os.getloadavg(),
                    "faiss_threads": faiss.omp_get_max_threads()},
    }
    k = args.k

    t = time.perf_counter()
    corpus = synthetic_corpus(args.passages, seed=args.seed)
    n = len(corpus.passages)
    out["corpus"] = {"passages": n, "documents": len(corpus), "seconds": round(time.perf_counter() - t, 1)}
    queries = make_queries(corpus, args.queries, seed=args.seed + 1)

    log("building our BM25 index over the whole corpus")
    t = time.perf_counter()
    bm25 = BM25Searcher.build(corpus.passages, show_progress=False)
    bm25_build_s = time.perf_counter() - t

    log("building the dense index from random unit vectors")
    rng = np.random.default_rng(args.seed + 2)
    model = load_embedder("minilm")  # the bare sentence-transformers baseline
    encoder = get_encoder("minilm", args.encoder)
    dim = encoder.dim
    vectors = np.empty((n, dim), dtype=np.float32)
    for s in range(0, n, 100_000):
        block = rng.standard_normal((min(100_000, n - s), dim), dtype=np.float32)
        vectors[s:s + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    t = time.perf_counter()
    dense = DenseSearcher.from_vectors(vectors, bm25.passage_ids, bm25.doc_ids, DenseConfig(encoder=args.encoder),
                                       encoder=encoder)
    dense_build_s = time.perf_counter() - t
    del vectors
    hybrid = HybridSearcher(bm25, dense)
    out["index"] = {"encoder_backend": encoder.backend.name, "dense_index": type(dense.index).__name__,
                    "dense_vectors_added_per_s": rate(n, dense_build_s),
                    "nlist": getattr(dense.index, "nlist", None), "nprobe": getattr(dense.index, "nprobe", None)}

    log(f"timing {len(queries)} queries")
    lat: dict = {}
    stemmer = Stemmer.Stemmer("english")
    pre_tokens = {q: bm25s.tokenize([q], stopwords="en", stemmer=stemmer, return_ids=False, show_progress=False)
                  for q in queries}
    retriever = bm25.retriever
    lat["bm25s_retrieve"] = timed(lambda q: retriever.retrieve(pre_tokens[q], k=k, show_progress=False), queries)
    lat["bm25s_tokenize_retrieve"] = timed(lambda q: retriever.retrieve(
        bm25s.tokenize([q], stopwords="en", stemmer=stemmer, return_ids=False, show_progress=False),
        k=k, show_progress=False), queries)
    qvecs = {q: encoder.encode([q]) for q in queries}
    lat["faiss_search_default_threads"] = timed(lambda q: dense.index.search(qvecs[q], k), queries)
    with one_thread():  # the setting our dense search uses for one query (see env.search.dense)
        lat["faiss_search"] = timed(lambda q: dense.index.search(qvecs[q], k), queries)
        lat["encode_faiss_search"] = timed(
            lambda q: dense.index.search(model.encode([q], normalize_embeddings=True, convert_to_numpy=True), k),
            queries)
        lat["encoder"] = timed(lambda q: encoder.encode([q]), queries)
    lat["bm25"] = timed(lambda q: bm25.search(q, k), queries)
    lat["dense"] = timed(lambda q: dense.search(q, k), queries)
    lat["hybrid"] = timed(lambda q: hybrid.search(q, k), queries)
    backend_bm25 = LocalBackend(corpus, bm25)
    backend_hybrid = LocalBackend(corpus, hybrid)
    lat["backend_bm25"] = timed(lambda q: backend_bm25.search(q, k), queries)
    lat["backend_hybrid"] = timed(lambda q: backend_hybrid.search(q, k), queries)
    try:
        from citeenv.browser import BrowserConfig
        from citeenv.gym_env import TextBrowserEnv
    except ImportError as e:
        out["env_error"] = f"citeenv.gym_env.TextBrowserEnv could not be imported ({e}); env latency not measured"
        log(out["env_error"])
    else:
        env = TextBrowserEnv(backend=backend_bm25, config=BrowserConfig(search_k=k))

        def env_search(q):
            env.reset(options={"question": q})  # untimed below: only the step is the search
            return q

        step_ms = []
        for i, q in enumerate(queries[:5] + queries):
            env_search(q)
            t = time.perf_counter()
            obs, _, _, _, info = env.step(f"Search {q}")
            if i >= 5:
                step_ms.append((time.perf_counter() - t) * 1000)
            if info.get("error"):
                raise SystemExit(f"the environment rejected a search: {info['error']}")
        lat["env_search_bm25"] = summary(step_ms)
    out["latency_ms"] = lat
    log("latency p50/p90 ms: " + ", ".join(f"{name} {v['p50']:.1f}/{v['p90']:.1f}" for name, v in lat.items()))

    def ratio(a, b):
        return round(lat[a]["p50"] / lat[b]["p50"], 3) if a in lat and b in lat else None

    out["ratios_p50"] = {
        "bm25 / bm25s_retrieve": ratio("bm25", "bm25s_retrieve"),
        "bm25 / bm25s_tokenize_retrieve": ratio("bm25", "bm25s_tokenize_retrieve"),
        "dense / encode_faiss_search": ratio("dense", "encode_faiss_search"),
        "dense / faiss_search": ratio("dense", "faiss_search"),
        "encoder / encode_faiss_search": ratio("encoder", "encode_faiss_search"),
        "hybrid / (bm25 + dense)": round(lat["hybrid"]["p50"] / (lat["bm25"]["p50"] + lat["dense"]["p50"]), 3),
        "backend_bm25 / bm25": ratio("backend_bm25", "bm25"),
        "env_search_bm25 / backend_bm25": ratio("env_search_bm25", "backend_bm25"),
    }
    env_overhead = ratio("env_search_bm25", "backend_bm25")
    out["goals"] = {
        "p50_under_20ms": {name: lat[name]["p50"] < 20 for name in ("bm25", "dense", "hybrid", "backend_bm25",
                                                                    "backend_hybrid", "env_search_bm25") if name in lat},
        "env_overhead_under_20pct": None if env_overhead is None else env_overhead < 1.2,
    }

    log("build throughput")
    build: dict = {"bm25_ours_full_corpus": {"passages": n, "seconds": round(bm25_build_s, 1),
                                             "passages_per_s": rate(n, bm25_build_s)}}
    sample = corpus.passages[: args.build_sample]
    t = time.perf_counter()
    BM25Searcher.build(sample, show_progress=False)
    ours_s = time.perf_counter() - t
    texts = [passage_text(p, True) for p in sample]
    t = time.perf_counter()
    tokens = bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, show_progress=False)
    bm25s.BM25().index(tokens, show_progress=False)
    bare_s = time.perf_counter() - t
    build["bm25_sample"] = {"passages": len(sample), "ours_passages_per_s": rate(len(sample), ours_s),
                            "bare_bm25s_passages_per_s": rate(len(sample), bare_s),
                            "ours / bare (time)": round(ours_s / bare_s, 3)}
    del corpus, bm25, dense, hybrid, backend_bm25, backend_hybrid, retriever

    pydocs = build_pydocs()
    real = pydocs.passages[: args.encode_passages]
    texts = [passage_text(p, True) for p in real]
    encoder.encode(texts[:16])  # warm up
    t = time.perf_counter()
    DenseSearcher.build(real, DenseConfig(encoder=args.encoder), encoder=encoder, show_progress=False)
    ours_s = time.perf_counter() - t
    t = time.perf_counter()
    model.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
    bare_s = time.perf_counter() - t
    build["dense_pydocs"] = {"passages": len(real), "ours_passages_per_s": rate(len(real), ours_s),
                             "bare_encode_passages_per_s": rate(len(real), bare_s),
                             "ours / bare (time)": round(ours_s / bare_s, 3)}
    out["build"] = build
    out["machine"]["load_avg_at_end"] = os.getloadavg()
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
