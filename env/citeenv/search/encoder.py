"""Sentence embeddings without the sentence-transformers call overhead.

`load_encoder("minilm").encode(texts)` returns the vectors sentence-transformers' all-MiniLM-L6-v2
returns (BERT, mean pooling over real tokens, L2 normalisation), float32 [n, dim], up to float
rounding: the fast tokenizer and the transformers model are called directly, so one short
text costs its arithmetic plus little else.

Backends:
    torch   transformers model under torch.inference_mode (the default)
    st      sentence-transformers `encode`, the reference the others are measured against

Thread safety: `Encoder.encode` may be called from several threads at once. The tokenizer and
the model are only read, and the cache is guarded by a lock; two threads that miss on the same
text both compute it and store the same vector.
"""
from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from citeenv.corpus import CorpusError
from citeenv.search.embedder import DEFAULT_EMBEDDER, resolve_embedder

BACKENDS = ("torch", "st")


class EncoderError(CorpusError):
    """The encoder's weights or backend cannot be loaded; the message says what to do."""


@dataclass
class EncoderConfig:
    name: str = DEFAULT_EMBEDDER  # 'minilm' (bundled, offline), a local model directory or a hub name
    backend: str = "auto"  # one of BACKENDS, or "auto" (the fastest that is available)
    max_length: int = 256  # tokens per text, as sentence-transformers' max_seq_length for MiniLM
    cache_size: int = 0  # texts whose vectors are kept (least recently used dropped); 0 = no cache


def model_directory(name: str) -> Path:
    """The local directory holding `name`'s weights, with a message naming the fix if absent."""
    try:
        path = resolve_embedder(name)
    except RuntimeError as e:  # the bundled MiniLM package is not installed
        raise EncoderError(str(e)) from None
    if not os.path.isdir(path):
        hint = ("pass a directory holding a sentence-transformers model (config.json, tokenizer.json, "
                "model.safetensors), or 'minilm' for the bundled all-MiniLM-L6-v2")
        if os.path.isabs(path) or path.startswith("."):
            raise EncoderError(f"No model directory at {path}: {hint}.")
        from huggingface_hub import snapshot_download

        try:  # a hub name: only what is already in the local cache when offline
            path = snapshot_download(path)
        except Exception as e:  # noqa: BLE001 - the hub client raises many kinds; all mean "not available"
            raise EncoderError(f"Cannot load the embedder {name!r} ({type(e).__name__}: {e}); {hint}.") from None
    for needed in ("config.json", "tokenizer.json"):
        if not os.path.isfile(os.path.join(path, needed)):
            raise EncoderError(f"{path} holds no {needed}, so it is not a model directory the encoder can load; "
                               "pass a sentence-transformers model directory or 'minilm'.")
    return Path(path)


class TorchBackend:
    """Fast tokenizer + BERT forward + mean pooling, as sentence-transformers computes it."""

    name = "torch"

    def __init__(self, directory: Path, max_length: int):
        import torch
        from tokenizers import Tokenizer
        from transformers import AutoModel

        self.torch = torch
        self.tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        # tokenizer.json pads every text to a fixed 128 tokens and cuts there; sentence-transformers
        # cuts at max_seq_length and pads to the longest text of the batch, which is also cheaper.
        self.tokenizer.enable_truncation(max_length)
        pad_id = self.tokenizer.token_to_id("[PAD]") or 0
        self.tokenizer.enable_padding(pad_id=pad_id, pad_token="[PAD]")
        self.model = AutoModel.from_pretrained(str(directory)).eval()
        self.dim = int(self.model.config.hidden_size)

    def tokenize(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        encodings = self.tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        return ids, mask

    def embed(self, texts: list[str]) -> np.ndarray:
        torch = self.torch
        ids, mask = self.tokenize(texts)
        with torch.inference_mode():
            ids_t, mask_t = torch.from_numpy(ids), torch.from_numpy(mask)
            hidden = self.model(input_ids=ids_t, attention_mask=mask_t,
                                token_type_ids=torch.zeros_like(ids_t)).last_hidden_state
            return mean_pool(hidden.numpy(), mask)


class SentenceTransformersBackend:
    """sentence-transformers `encode`: the reference vectors."""

    name = "st"

    def __init__(self, directory: Path, max_length: int):
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(str(directory), device="cpu", local_files_only=True)
        self.model.max_seq_length = max_length
        get = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dim = int(get())

    def embed(self, texts: list[str]) -> np.ndarray:
        return self.model.encode(texts, batch_size=len(texts), normalize_embeddings=True, convert_to_numpy=True,
                                 show_progress_bar=False)


def mean_pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Average of the real tokens' vectors, L2-normalised (sentence-transformers' Pooling + Normalize)."""
    weights = mask[:, :, None].astype(np.float32)
    summed = (hidden * weights).sum(axis=1)
    pooled = summed / np.maximum(weights.sum(axis=1), 1e-9)
    return normalize(pooled)


def normalize(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)


class Encoder:
    """Texts to L2-normalised float32 vectors, batched, with an optional LRU cache of vectors by text."""

    def __init__(self, backend, cache_size: int = 0, name: str = DEFAULT_EMBEDDER):
        self.backend = backend
        self.name = name
        self.dim = backend.dim
        self.cache_size = max(0, int(cache_size))
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        if isinstance(texts, str):
            raise TypeError("Encoder.encode takes a list of texts; wrap a single text as [text].")
        texts = list(texts)
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        todo, repeats = self._from_cache(texts, out) if self.cache_size else (list(range(len(texts))), {})
        if todo:
            # Texts of similar length share a batch, so little of each batch is padding.
            order = sorted(todo, key=lambda i: len(texts[i]))
            for start in range(0, len(order), max(1, batch_size)):
                rows = order[start:start + max(1, batch_size)]
                out[rows] = self.backend.embed([texts[i] for i in rows])
            if self.cache_size:
                self._store(texts, out, todo, repeats)
        return out

    def _from_cache(self, texts: list[str], out: np.ndarray) -> tuple[list[int], dict[str, list[int]]]:
        """Fill `out` from the cache. Returns the indices still to compute (each distinct text
        once) and, per such text, every index where it occurs."""
        todo, first_of = [], {}
        with self._lock:
            for i, text in enumerate(texts):
                vector = self._cache.get(text)
                if vector is not None:
                    self._cache.move_to_end(text)
                    out[i] = vector
                    self.hits += 1
                elif text in first_of:
                    first_of[text].append(i)
                else:
                    first_of[text] = [i]
                    todo.append(i)
                    self.misses += 1
        return todo, first_of

    def _store(self, texts: list[str], out: np.ndarray, todo: list[int], repeats: dict[str, list[int]]) -> None:
        with self._lock:
            for i in todo:
                vector = out[i].copy()
                vector.flags.writeable = False
                for j in repeats[texts[i]][1:]:
                    out[j] = vector
                self._cache[texts[i]] = vector
                self._cache.move_to_end(texts[i])
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)

    def clear_cache(self) -> None:
        with self._lock:
            self._cache.clear()


def load_encoder(name: str = DEFAULT_EMBEDDER, backend: str = "auto", cache_size: int = 0,
                 max_length: int = 256) -> Encoder:
    """An Encoder for `name` ('minilm', a model directory or a hub name) on `backend`."""
    if backend == "auto":
        backend = "torch"
    if backend not in BACKENDS:
        raise EncoderError(f"Unknown encoder backend {backend!r}: use one of {', '.join(BACKENDS)} or auto.")
    directory = model_directory(name)
    cls = TorchBackend if backend == "torch" else SentenceTransformersBackend
    return Encoder(cls(directory, max_length), cache_size=cache_size, name=name)
