"""BM25, dense and hybrid searchers, and the local browser backend."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest

from citeenv.backends import BrowserError
from citeenv.corpus import Corpus
from citeenv.documents import Document
from citeenv.local import LocalBackend
from citeenv.search import load_searcher
from citeenv.search.base import Hit
from citeenv.search.bm25 import BM25Searcher
from citeenv.search.dense import DenseConfig, DenseSearcher
from citeenv.search.hybrid import HybridSearcher
from citeenv.sources.hotpotqa import pooled_corpus
from citeenv.sources.pydocs import build_pydocs

QUERIES = ["json.dumps", "serialize an object to a JSON formatted string", "assert statement",
           "os.path.join", "Scott Derrickson director", "no-such-word-anywhere"]


@pytest.fixture(scope="module")
def pydocs():
    return build_pydocs()


@pytest.fixture(scope="module")
def pydocs_bm25(pydocs):
    return BM25Searcher.build(pydocs.passages, show_progress=False)


@pytest.fixture(scope="module")
def hotpot_small():
    return pooled_corpus(limit=25)  # ~250 paragraphs: enough for dense tests with the real MiniLM


@pytest.fixture(scope="module")
def hotpot_dense(hotpot_small):
    return DenseSearcher.build(hotpot_small.passages, show_progress=False)


# --- BM25 ------------------------------------------------------------------------------------

def test_bm25_finds_known_pydocs_content(pydocs_bm25):
    top = [h.doc_id for h in pydocs_bm25.search("json.dumps", 3)]
    assert top[0] == "pydocs:module:json"
    assert pydocs_bm25.search("assert statement", 1)[0].doc_id == "pydocs:topic:assert"
    assert pydocs_bm25.search("os.path.join", 1)[0].doc_id == "pydocs:module:os.path"


def test_bm25_hits_are_ranked_and_nonzero(pydocs_bm25):
    hits = pydocs_bm25.search("serialize JSON", 20)
    assert [h.rank for h in hits] == list(range(len(hits)))
    assert all(a.score >= b.score > 0 for a, b in zip(hits, hits[1:]))
    assert pydocs_bm25.search("zzqqxx", 5) == []  # no shared word: no results
    assert pydocs_bm25.search("", 5) == [] and pydocs_bm25.search("the and of", 5) == []  # stopwords only


def test_bm25_stems(pydocs_bm25):
    # "serializing" and "serialize" share a stem, so both queries find the json page.
    assert pydocs_bm25.search("serializing JSON", 1)[0].doc_id == pydocs_bm25.search("serialize JSON", 1)[0].doc_id


def test_bm25_query_words_are_cut_like_the_passages(pydocs_bm25):
    from citeenv.search.bm25 import _tokenizer

    # A copy: Tokenizer.tokenize caches query words, and the index's own tokenizer must stay clean.
    tokenizer, original = _tokenizer(pydocs_bm25.config), pydocs_bm25.tokenizer
    tokenizer.word_to_stem, tokenizer.stem_to_sid = dict(original.word_to_stem), dict(original.stem_to_sid)
    tokenizer.word_to_id = dict(original.word_to_id)
    empty = tokenizer.word_to_id.get("")
    for q in ["Serializing JSON objects!", "os.path.join(a, b)", "the quick brown foxes", "ÜBER straße"]:
        expected = [i for i in tokenizer.tokenize([q], update_vocab=False, show_progress=False)[0] if i != empty]
        assert pydocs_bm25.query_ids(q) == expected


def test_bm25_k_larger_than_corpus():
    docs = [Document(str(i), f"T{i}", f"u{i}", f"apple number {i}") for i in range(3)]
    searcher = BM25Searcher.build(Corpus(docs).passages, show_progress=False)
    assert len(searcher.search("apple", 10)) == 3


def test_bm25_save_load_equals_fresh_build(tmp_path, pydocs, pydocs_bm25):
    pydocs_bm25.save(tmp_path / "bm25")
    loaded = BM25Searcher.load(tmp_path / "bm25")
    again = load_searcher(tmp_path / "bm25")
    for q in QUERIES:
        assert loaded.search(q, 10) == pydocs_bm25.search(q, 10) == again.search(q, 10)


# --- dense -----------------------------------------------------------------------------------

def test_dense_finds_paraphrase(hotpot_small, hotpot_dense):
    # Scott Derrickson "is best known for directing horror films": no query word but "film-"
    # occurs in it, so BM25 ranks other pages first while the embedding matches the meaning.
    query = "scary movie filmmaker"
    assert hotpot_dense.search(query, 1)[0].doc_id == "Scott Derrickson"
    bm25 = BM25Searcher.build(hotpot_small.passages, show_progress=False)
    assert "Scott Derrickson" not in [h.doc_id for h in bm25.search(query, 3)]
    hits = hotpot_dense.search(query, 5)
    assert [h.rank for h in hits] == list(range(5)) and all(-1.0 <= h.score <= 1.0 for h in hits)
    assert hotpot_dense.search("   ", 3) == []


def test_dense_save_load_round_trip(tmp_path, hotpot_dense):
    hotpot_dense.save(tmp_path / "dense")
    loaded = DenseSearcher.load(tmp_path / "dense")
    assert loaded.dim == 384 and loaded.config.embedder == "minilm"
    for q in QUERIES:
        assert [h.passage_id for h in loaded.search(q, 10)] == [h.passage_id for h in hotpot_dense.search(q, 10)]
        assert np.allclose([h.score for h in loaded.search(q, 10)], [h.score for h in hotpot_dense.search(q, 10)],
                           atol=1e-5)


def test_dense_index_built_by_sentence_transformers_is_searched_by_the_fast_encoder(tmp_path, hotpot_small):
    import json

    # An index saved before the encoder backends existed: built by sentence-transformers, and
    # its searcher.json has no "encoder", so it is queried by the default (fast) backend.
    old = DenseSearcher.build(hotpot_small.passages[:60], DenseConfig(encoder="st"), show_progress=False)
    old.save(tmp_path / "dense")
    meta_file = tmp_path / "dense" / "searcher.json"
    meta = json.loads(meta_file.read_text())
    del meta["config"]["encoder"]
    meta_file.write_text(json.dumps(meta))
    loaded = DenseSearcher.load(tmp_path / "dense")
    assert loaded.config.encoder == "auto" and loaded.encoder.backend.name == "onnx"
    for q in QUERIES:
        hits, expected = loaded.search(q, 10), old.search(q, 10)
        assert [h.passage_id for h in hits] == [h.passage_id for h in expected]
        np.testing.assert_allclose([h.score for h in hits], [h.score for h in expected], atol=1e-5)


def test_dense_ivf_index_from_vectors(tmp_path):
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((3000, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = [f"p{i}" for i in range(3000)]
    config = DenseConfig(index="ivf", nlist=8, nprobe=8)  # all cells probed: exact answers
    searcher = DenseSearcher.from_vectors(vectors, ids, [f"d{i // 3}" for i in range(3000)], config)
    import faiss

    assert isinstance(searcher.index, faiss.IndexIVF)
    hits = searcher.search_vector(vectors[1234], 5)
    assert hits[0].passage_id == "p1234" and hits[0].doc_id == "d411" and hits[0].score == pytest.approx(1.0)
    exact = np.argsort(-(vectors @ vectors[1234]))[:5]
    assert [h.passage_id for h in hits] == [f"p{i}" for i in exact]
    searcher.save(tmp_path / "ivf")
    loaded = DenseSearcher.load(tmp_path / "ivf")
    assert loaded.index.nprobe == 8 and loaded.search_vector(vectors[1234], 5) == hits


# --- hybrid ----------------------------------------------------------------------------------

class FixedSearcher:
    """Returns a fixed ranking: the inputs of the fusion under test, not a stand-in for it."""

    def __init__(self, name, pids):
        self.name, self.pids = name, pids

    def search(self, query, k=10):
        return [Hit(p, p.split("::")[0], 1.0 / (i + 1), i) for i, p in enumerate(self.pids[:k])]


def test_hybrid_rrf_matches_hand_computed_fusion():
    a = FixedSearcher("a", ["x::0", "y::0", "z::0", "w::0"])
    b = FixedSearcher("b", ["z::0", "x::0", "v::0"])
    hits = HybridSearcher(a, b, k=60).search("q", 10)
    expected = {
        "x::0": 1 / 61 + 1 / 62,
        "z::0": 1 / 63 + 1 / 61,
        "y::0": 1 / 62,
        "v::0": 1 / 63,
        "w::0": 1 / 64,
    }
    # x: 1/61 + 1/62 = 0.032519; z: 1/63 + 1/61 = 0.032266; y: 0.016129; v: 0.015873; w: 0.015625
    assert [h.passage_id for h in hits] == ["x::0", "z::0", "y::0", "v::0", "w::0"]
    for h in hits:
        assert h.score == pytest.approx(expected[h.passage_id])
    assert [h.rank for h in hits] == [0, 1, 2, 3, 4]
    assert [h.passage_id for h in HybridSearcher(a, b, k=60).search("q", 2)] == ["x::0", "z::0"]


def test_hybrid_ties_go_to_better_single_rank():
    a = FixedSearcher("a", ["p::0", "q::0"])
    b = FixedSearcher("b", ["q::0", "p::0"])
    # Both passages score 1/61 + 1/62; both have best rank 0; the first searcher's order decides.
    assert [h.passage_id for h in HybridSearcher(a, b).search("q", 2)] == ["p::0", "q::0"]
    c = FixedSearcher("c", ["r::0", "s::0"])
    d = FixedSearcher("d", ["t::0", "s::0"])
    # r (rank 0 in c) and t (rank 0 in d) tie at 1/61; r came first.
    assert [h.passage_id for h in HybridSearcher(c, d).search("q", 3)] == ["s::0", "r::0", "t::0"]


def test_hybrid_of_real_searchers_save_load(tmp_path, hotpot_small, hotpot_dense):
    bm25 = BM25Searcher.build(hotpot_small.passages, show_progress=False)
    hybrid = HybridSearcher(bm25, hotpot_dense)
    hybrid.save(tmp_path / "hybrid")
    loaded = load_searcher(tmp_path / "hybrid")
    assert isinstance(loaded, HybridSearcher)
    for q in QUERIES:
        assert [h.passage_id for h in loaded.search(q, 10)] == [h.passage_id for h in hybrid.search(q, 10)]
    assert hybrid.search("Scott Derrickson director", 1)[0].doc_id == "Scott Derrickson"


# --- the local backend ---------------------------------------------------------------------------

def test_local_backend_one_result_per_document(pydocs, pydocs_bm25):
    backend = LocalBackend(pydocs, pydocs_bm25, snippet_chars=120)
    results = backend.search("json.dumps", 10)
    assert len(results) == 10
    urls = [r.url for r in results]
    assert len(set(urls)) == 10 and urls[0] == "https://docs.python.org/3/library/json.html"
    hits = pydocs_bm25.search("json.dumps", 100)
    first_json_hit = next(h for h in hits if h.doc_id == "pydocs:module:json")
    best = pydocs.passage(first_json_hit.passage_id)
    assert results[0].offset == best.start  # a click opens the page at the hit
    assert pydocs.get("pydocs:module:json").text[best.start:].startswith(best.text[:50])
    for r in results:
        assert len(r.snippet) <= 122 and "\n" not in r.snippet
    assert backend.search("zzqqxx", 5) == [] and backend.search("json", 0) == []


def test_local_backend_open(pydocs, pydocs_bm25):
    backend = LocalBackend(pydocs, pydocs_bm25)
    page = backend.open("https://docs.python.org/3/library/json.html")
    assert page.doc_id == "pydocs:module:json" and page.title.startswith("json — ")
    assert page.text == pydocs.get("pydocs:module:json").text and page.links
    anchored = backend.open("https://docs.python.org/3/library/json.html#json.dumps")
    assert anchored.doc_id == "pydocs:module:json"
    assert backend.open("https://docs.python.org/3/reference/topics.html#assert").doc_id == "pydocs:topic:assert"
    with pytest.raises(BrowserError, match="no page at https://example.com/x"):
        backend.open("https://example.com/x")


def test_local_backend_fetches_deeper_when_one_document_dominates():
    # 30 passages of one document outrank everything else; the backend still fills k documents.
    big = Document("big", "Big", "u:big", " ".join(["Apple apple apple pie."] * 200))
    small = [Document(f"s{i}", f"S{i}", f"u:s{i}", f"An apple tree number {i} and other fruit.") for i in range(5)]
    corpus = Corpus([big, *small], chunk_chars=100)
    backend = LocalBackend(corpus, BM25Searcher.build(corpus.passages, show_progress=False))
    assert len([p for p in corpus.passages if p.doc_id == "big"]) > 30
    results = backend.search("apple", 4)
    assert [r.url for r in results][0] == "u:big" and len({r.url for r in results}) == 4
