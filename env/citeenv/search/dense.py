"""Dense passage search: sentence embeddings (citeenv.search.encoder) in a faiss inner-product index.

Vectors are L2-normalised, so inner product is cosine similarity. Small corpora get an exact
flat index; large ones (over `flat_max` passages) an IVF index, because exact search over a
million 384-d vectors reads 1.5 GB per query (~100 ms) while IVF probes a few percent of them.

Saved as a directory:
    searcher.json   kind, DenseConfig, embedder name and dimension, index type
    rows.jsonl      one [passage_id, doc_id] per index row
    index.faiss     the faiss index
"""
from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import faiss
import numpy as np

from citeenv.corpus import CorpusError
from citeenv.documents import Passage
from citeenv.search.base import Hit
from citeenv.search.bm25 import passage_text
from citeenv.search.embedder import DEFAULT_EMBEDDER
from citeenv.search.encoder import Encoder, load_encoder
from citeenv.search.storage import load_rows, read_meta, save_rows, write_meta


@dataclass
class DenseConfig:
    embedder: str = DEFAULT_EMBEDDER  # 'minilm' (bundled, offline) or a Hugging Face model name/path
    # citeenv.search.encoder backend for building and querying: auto, onnx, torch, st (all give
    # the same vectors to float rounding, so an index built by one is searched by any), onnx-int8
    encoder: str = "auto"
    batch_size: int = 64
    include_title: bool = True
    index: str = "auto"  # "flat" (exact), "ivf" (approximate), "auto": flat up to flat_max passages
    flat_max: int = 100_000
    nlist: int = 0  # IVF cells; 0 = about sqrt(passages)
    nprobe: int = 32  # IVF cells searched per query
    seed: int = 0  # for the IVF training sample, so a rebuild gives the same index


_encoders: dict[tuple[str, str], Encoder] = {}
PROGRESS_CHUNK = 4096  # texts per progress-bar step; the encoder sorts each chunk by length


def get_encoder(name: str | None = None, backend: str = "auto") -> Encoder:
    """The encoder for `name` on `backend`, loaded once per process: evaluation builds hundreds
    of small in-memory indexes and must not reload the weights for each."""
    key = (name or DEFAULT_EMBEDDER, backend)
    if key not in _encoders:
        _encoders[key] = load_encoder(key[0], backend=backend)
    return _encoders[key]


def encode_with_progress(encoder: Encoder, texts: list[str], batch_size: int, show_progress: bool) -> np.ndarray:
    if not show_progress or len(texts) <= PROGRESS_CHUNK:
        return encoder.encode(texts, batch_size)
    from tqdm.auto import tqdm

    out = np.empty((len(texts), encoder.dim), dtype=np.float32)
    with tqdm(total=len(texts), desc="embedding passages", unit="passage") as bar:
        for start in range(0, len(texts), PROGRESS_CHUNK):
            chunk = texts[start:start + PROGRESS_CHUNK]
            out[start:start + len(chunk)] = encoder.encode(chunk, batch_size)
            bar.update(len(chunk))
    return out


@contextlib.contextmanager
def one_thread():
    """Run one query on one thread. A single short query gains nothing from intra-op threads,
    and on busy shared cores OpenMP's spin-waiting makes it many times slower (measured on 2
    loaded cores: MiniLM 11 ms on 1 thread vs 500 ms on 2; a flat faiss search likewise)."""
    import torch

    before = torch.get_num_threads(), faiss.omp_get_max_threads()
    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)  # OpenMP: affects parallel regions started by this thread only
    try:
        yield
    finally:
        torch.set_num_threads(before[0])
        faiss.omp_set_num_threads(before[1])


def make_index(vectors: np.ndarray, config: DenseConfig) -> faiss.Index:
    n, dim = vectors.shape
    kind = config.index if config.index != "auto" else ("flat" if n <= config.flat_max else "ivf")
    if kind == "flat":
        index = faiss.IndexFlatIP(dim)
    elif kind == "ivf":
        nlist = config.nlist or max(1, int(math.sqrt(n)))
        nlist = max(1, min(nlist, n // 39))  # faiss wants ~39 training points per cell
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
        sample = min(n, 64 * nlist)
        rows = np.sort(np.random.default_rng(config.seed).choice(n, sample, replace=False))
        index.train(vectors[rows])
        index.nprobe = min(config.nprobe, nlist)
    else:
        raise CorpusError(f"Unknown dense index type {config.index!r}: use flat, ivf or auto.")
    index.add(vectors)
    return index


class DenseSearcher:
    name = "dense"

    def __init__(self, index: faiss.Index, passage_ids: list[str], doc_ids: list[str], config: DenseConfig,
                 encoder: Encoder | None = None):
        self.index = index
        self.passage_ids = passage_ids
        self.doc_ids = doc_ids
        self.config = config
        self._encoder = encoder

    def __len__(self) -> int:
        return len(self.passage_ids)

    @property
    def dim(self) -> int:
        return self.index.d

    @property
    def encoder(self) -> Encoder:
        if self._encoder is None:  # loaded on first search, so opening an index stays cheap
            encoder = get_encoder(self.config.embedder, self.config.encoder)
            if encoder.dim != self.dim:
                raise CorpusError(f"This dense index holds {self.dim}-d vectors but the embedder "
                                  f"{self.config.embedder!r} makes {encoder.dim}-d ones. Rebuild it with "
                                  "`citeagent index build --kinds dense --embedder NAME`.")
            self._encoder = encoder
        return self._encoder

    @classmethod
    def build(cls, passages: Sequence[Passage], config: DenseConfig | None = None, encoder: Encoder | None = None,
              show_progress: bool = True) -> "DenseSearcher":
        config = config or DenseConfig()
        if not passages:
            raise CorpusError("Cannot build a dense index over an empty corpus (it has no passages).")
        encoder = encoder or get_encoder(config.embedder, config.encoder)
        texts = [passage_text(p, config.include_title) for p in passages]
        # One batch (a per-question corpus) is a short job: run it like a query, on one thread.
        with one_thread() if len(texts) <= config.batch_size else contextlib.nullcontext():
            vectors = encode_with_progress(encoder, texts, config.batch_size, show_progress)
        return cls.from_vectors(vectors, [p.id for p in passages], [p.doc_id for p in passages], config, encoder)

    @classmethod
    def from_vectors(cls, vectors: np.ndarray, passage_ids: list[str], doc_ids: list[str],
                     config: DenseConfig | None = None, encoder: Encoder | None = None) -> "DenseSearcher":
        """An index over precomputed (normalised) vectors, one row per passage id."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or len(vectors) != len(passage_ids) or len(passage_ids) != len(doc_ids):
            raise CorpusError(f"Need one vector per passage: got {vectors.shape} vectors for "
                              f"{len(passage_ids)} passage ids and {len(doc_ids)} doc ids.")
        config = config or DenseConfig()
        return cls(make_index(vectors, config), list(passage_ids), list(doc_ids), config, encoder)

    def search(self, query: str, k: int = 10) -> list[Hit]:
        k = min(k, len(self.passage_ids))
        if k <= 0 or not query.strip():
            return []
        with one_thread():
            vector = self.encoder.encode([query])[0]
            return self.search_vector(vector, k)

    def search_vector(self, vector: np.ndarray, k: int = 10) -> list[Hit]:
        with one_thread():
            scores, rows = self.index.search(vector.reshape(1, -1).astype(np.float32, copy=False), min(k, len(self)))
        hits = []
        for row, score in zip(rows[0].tolist(), scores[0].tolist()):
            if row >= 0:  # IVF returns -1 when the probed cells hold fewer than k vectors
                hits.append(Hit(self.passage_ids[row], self.doc_ids[row], float(score), len(hits)))
        return hits

    def save(self, directory) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self.index, str(directory / "index.faiss"))
        save_rows(directory, self.passage_ids, self.doc_ids)
        index_type = "ivf" if isinstance(self.index, faiss.IndexIVF) else "flat"
        write_meta(directory, self.name, config=asdict(self.config), embedder=self.config.embedder, dim=self.dim,
                   index_type=index_type, passages=len(self))

    @classmethod
    def load(cls, directory, encoder: Encoder | None = None) -> "DenseSearcher":
        directory = Path(directory)
        meta = read_meta(directory, cls.name)
        config = DenseConfig(**meta["config"])
        index = faiss.read_index(str(directory / "index.faiss"))
        if isinstance(index, faiss.IndexIVF):
            index.nprobe = min(config.nprobe, index.nlist)
        passage_ids, doc_ids = load_rows(directory)
        return cls(index, passage_ids, doc_ids, config, encoder)
