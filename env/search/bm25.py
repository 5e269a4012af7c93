"""BM25 passage search with bm25s: English stopwords removed, words Snowball-stemmed.

Saved as a directory:
    searcher.json          kind and BM25Config
    rows.jsonl             one [passage_id, doc_id] per index row
    bm25s/                 the bm25s index (score matrix, vocabulary, parameters)
    vocab.tokenizer.json   the tokenizer's word -> stem -> id maps
    stopwords.tokenizer.json
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import bm25s
from bm25s.tokenization import Tokenized, Tokenizer

from env.corpus import CorpusError
from env.documents import Passage
from env.search.base import Hit
from env.search.storage import load_rows, read_meta, save_rows, write_meta


@dataclass
class BM25Config:
    k1: float = 1.5
    b: float = 0.75
    method: str = "lucene"  # bm25s variants: robertson, atire, bm25l, bm25+, lucene
    stemmer: str | None = "english"  # a PyStemmer language, or None for no stemming
    stopwords: str | None = "en"
    include_title: bool = True  # index "title\ntext": a passage's page title is strong evidence


def passage_text(p: Passage, include_title: bool) -> str:
    return f"{p.title}\n{p.text}" if include_title and p.title else p.text


def _tokenizer(config: BM25Config) -> Tokenizer:
    stemmer = None
    if config.stemmer:
        import Stemmer

        stemmer = Stemmer.Stemmer(config.stemmer).stemWord
    return Tokenizer(stopwords=config.stopwords or [], stemmer=stemmer)


class BM25Searcher:
    name = "bm25"

    def __init__(self, retriever: bm25s.BM25, tokenizer: Tokenizer, passage_ids: list[str], doc_ids: list[str],
                 config: BM25Config):
        self.retriever = retriever
        self.tokenizer = tokenizer
        self.passage_ids = passage_ids
        self.doc_ids = doc_ids
        self.config = config

    def __len__(self) -> int:
        return len(self.passage_ids)

    @classmethod
    def build(cls, passages: Sequence[Passage], config: BM25Config | None = None,
              show_progress: bool = True) -> "BM25Searcher":
        config = config or BM25Config()
        if not passages:
            raise CorpusError("Cannot build a BM25 index over an empty corpus (it has no passages).")
        tokenizer = _tokenizer(config)
        texts = [passage_text(p, config.include_title) for p in passages]
        ids = tokenizer.tokenize(texts, update_vocab=True, return_as="ids", show_progress=show_progress)
        retriever = bm25s.BM25(k1=config.k1, b=config.b, method=config.method)
        retriever.index(Tokenized(ids=ids, vocab=tokenizer.get_vocab_dict()), show_progress=show_progress)
        return cls(retriever, tokenizer, [p.id for p in passages], [p.doc_id for p in passages], config)

    def query_ids(self, query: str) -> list[int]:
        # update_vocab=False: a query never adds stems, so unknown words are simply dropped.
        return self.tokenizer.tokenize([query], update_vocab=False, return_as="ids", show_progress=False)[0]

    def search(self, query: str, k: int = 10) -> list[Hit]:
        k = min(k, len(self.passage_ids))
        if k <= 0:
            return []
        ids = self.query_ids(query)
        rows, scores = self.retriever.retrieve([ids], k=k, show_progress=False, n_threads=0,
                                               backend_selection="numpy")
        hits = []
        for row, score in zip(rows[0].tolist(), scores[0].tolist()):
            if score <= 0:  # passages sharing no word with the query are not results
                break
            hits.append(Hit(self.passage_ids[row], self.doc_ids[row], float(score), len(hits)))
        return hits

    def save(self, directory) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.retriever.save(directory / "bm25s", show_progress=False)
        self.tokenizer.save_vocab(directory)
        self.tokenizer.save_stopwords(directory)
        save_rows(directory, self.passage_ids, self.doc_ids)
        write_meta(directory, self.name, config=asdict(self.config), passages=len(self))

    @classmethod
    def load(cls, directory) -> "BM25Searcher":
        directory = Path(directory)
        meta = read_meta(directory, cls.name)
        config = BM25Config(**meta["config"])
        tokenizer = _tokenizer(config)
        tokenizer.load_vocab(directory)
        tokenizer.load_stopwords(directory)
        retriever = bm25s.BM25.load(directory / "bm25s", show_progress=False)
        passage_ids, doc_ids = load_rows(directory)
        return cls(retriever, tokenizer, passage_ids, doc_ids, config)
