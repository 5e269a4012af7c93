"""Sentence embeddings without the sentence-transformers call overhead.

`load_encoder("minilm").encode(texts)` returns the vectors sentence-transformers' all-MiniLM-L6-v2
returns (BERT, mean pooling over real tokens, L2 normalisation) as float32 [n, dim]: the fast
tokenizer and the network are called directly, so one short text costs little beyond its
arithmetic. Only such mean-pooling models are supported; others are refused with a message.

Backends (scripts/bench_encoder.py measures them against "st"):
    onnx       ONNX Runtime, fp32: the same vectors as "st" (cosine 1.0 to 5 decimals) and the
               fastest exact one. Exported from the transformers weights on first use into
               $CITEAGENT_HOME/encoders/ (about half a minute, once per set of weights).
    onnx-int8  the ONNX model with int8 weights (dynamic quantization, per output channel):
               about twice as fast again, but only close (cosine ~0.99, ~0.9 of top-10
               neighbours shared): opt-in, for scoring where that is good enough.
    torch      transformers under torch.inference_mode, exact; needs no onnxruntime.
    st         sentence-transformers `encode`: the reference.
    auto       onnx when onnxruntime and onnx are installed, else torch.

Threads: ONNX Runtime sessions use `threads` intra-op threads (default 1: on shared cores a
short job gains nothing from more, and they spin); the torch backends follow torch's global
setting (torch.set_num_threads).

Thread safety: `Encoder.encode` may be called from several threads at once. The tokenizer, the
model and the ONNX session are only read (ONNX Runtime's `run` is thread-safe), and the cache is
guarded by a lock; two threads that miss on the same text both compute it and store the same
vector.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import threading
import warnings
from collections import OrderedDict
from pathlib import Path

import numpy as np

from citeenv.corpus import CorpusError
from citeenv.search.embedder import DEFAULT_EMBEDDER, resolve_embedder

BACKENDS = ("onnx", "onnx-int8", "torch", "st")
log = logging.getLogger(__name__)
EXPORT_FORMAT = 2  # raise when the export or the quantization changes, so old files are not reused


class EncoderError(CorpusError):
    """The encoder's weights or backend cannot be loaded; the message says what to do."""


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


def check_mean_pooling(directory: Path) -> None:
    """Refuse a sentence-transformers model whose modules are not transformer + mean pooling
    (+ normalisation): the fast backends compute exactly that and nothing else."""
    modules_file = directory / "modules.json"
    if not modules_file.is_file():
        return  # a bare transformers model: mean pooling is what sentence-transformers would add
    kinds = [m.get("type", "").rsplit(".", 1)[-1] for m in json.loads(modules_file.read_text())]
    pooling_file = directory / "1_Pooling" / "config.json"
    pooling = json.loads(pooling_file.read_text()) if pooling_file.is_file() else {}
    modes = sorted(k for k, v in pooling.items() if k.startswith("pooling_mode") and v)
    if [k for k in kinds if k != "Normalize"] != ["Transformer", "Pooling"] or modes != ["pooling_mode_mean_tokens"]:
        raise EncoderError(f"{directory} is a sentence-transformers model with modules {kinds} and pooling "
                           f"{modes or 'unknown'}; the fast encoder backends compute Transformer + mean pooling "
                           "only. Use backend='st' for this model.")


def default_max_length(directory: Path) -> int:
    """Tokens per text as sentence-transformers cuts them: its max_seq_length (256 for MiniLM),
    else what the tokenizer allows, at most 512."""
    for name, key in (("sentence_bert_config.json", "max_seq_length"), ("tokenizer_config.json", "model_max_length")):
        file = directory / name
        if file.is_file():
            value = json.loads(file.read_text()).get(key)
            if isinstance(value, int) and value > 0:
                return min(value, 512)
    return 512


class Tokens:
    """The fast tokenizer set up as sentence-transformers uses it."""

    def __init__(self, directory: Path, max_length: int | None = None):
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        # MiniLM's tokenizer.json pads every text to a fixed 128 tokens and cuts there;
        # sentence-transformers cuts at max_seq_length and pads to the longest text of the
        # batch, which is also cheaper.
        padding = self.tokenizer.padding or {}
        self.tokenizer.enable_truncation(max_length or default_max_length(directory))
        self.tokenizer.enable_padding(pad_id=padding.get("pad_id", 0), pad_token=padding.get("pad_token", "[PAD]"))

    def __call__(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Token ids and attention mask, int64 [n, longest]."""
        encodings = self.tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        return ids, mask


def load_transformer(directory: Path, attn_implementation: str | None = None):
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a progress bar per load would flood logs of short jobs
    kwargs = {"attn_implementation": attn_implementation} if attn_implementation else {}
    return AutoModel.from_pretrained(str(directory), **kwargs).eval()


class TorchBackend:
    """Fast tokenizer + transformer forward under torch.inference_mode + mean pooling."""

    name = "torch"

    def __init__(self, directory: Path, max_length: int | None = None):
        import torch

        self.torch = torch
        self.tokens = Tokens(directory, max_length)
        self.model = load_transformer(directory)
        self.dim = int(self.model.config.hidden_size)

    def embed(self, texts: list[str]) -> np.ndarray:
        torch = self.torch
        ids, mask = self.tokens(texts)
        # No token_type_ids: models that have them default to all zeros (one segment), as
        # sentence-transformers feeds them, and models without them would refuse the argument.
        with torch.inference_mode():
            hidden = self.model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).last_hidden_state
            return mean_pool(hidden.numpy(), mask)


class OnnxBackend:
    """The same network run by ONNX Runtime, exported from the transformers weights on first use
    into $CITEAGENT_HOME/encoders/ (and dynamically quantized to int8 there when int8=True)."""

    INPUTS = ("input_ids", "attention_mask")

    def __init__(self, directory: Path, max_length: int | None = None, int8: bool = False, threads: int = 1):
        try:
            import onnx  # noqa: F401 - the export and the quantizer write ONNX files with it
            import onnxruntime as ort
        except ImportError:
            raise EncoderError("The onnx encoder backends need onnxruntime and onnx: "
                               "`pip install onnxruntime onnx`, or use backend='torch'.") from None
        self.name = "onnx-int8" if int8 else "onnx"
        self.tokens = Tokens(directory, max_length)
        path = onnx_model(directory, int8)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # Spinning worker threads steal the shared cores from everything else while idle.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.dim = int(self.session.get_outputs()[0].shape[-1])

    def embed(self, texts: list[str]) -> np.ndarray:
        ids, mask = self.tokens(texts)
        hidden = self.session.run(None, {"input_ids": ids, "attention_mask": mask})[0]
        return mean_pool(hidden, mask)


def onnx_model(directory: Path, int8: bool) -> Path:
    """The exported (int8: and quantized) ONNX file for the weights in `directory`, made once."""
    target = onnx_dir(directory) / ("model-int8.onnx" if int8 else "model.onnx")
    if target.is_file():
        return target
    fp32 = onnx_dir(directory) / "model.onnx"
    if not fp32.is_file():
        export_onnx(directory, fp32)
    if int8:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        log.info("quantizing %s to int8 (once)", fp32)
        partial = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        # Per-channel scales: one scale per output row keeps MiniLM's vectors at cosine ~0.99 to
        # fp32, where a single scale per matrix measured ~0.96 (scripts/bench_encoder.py).
        quantize_dynamic(str(fp32), str(partial), weight_type=QuantType.QInt8, per_channel=True)
        os.replace(partial, target)  # atomic: a concurrent process sees no file or the whole file
    return target


def onnx_dir(directory: Path) -> Path:
    """One folder per set of weights: the source path, its config and its weight file's size and
    time, so that replaced weights get a fresh export."""
    from citeenv.paths import citeagent_home

    weights = next((directory / f for f in ("model.safetensors", "pytorch_model.bin") if (directory / f).is_file()),
                   None)
    stat = weights.stat() if weights else None
    key = json.dumps([EXPORT_FORMAT, str(directory.resolve()), (directory / "config.json").read_text(),
                      stat and [stat.st_size, stat.st_mtime_ns]])
    return citeagent_home() / "encoders" / f"{directory.name}-{hashlib.sha1(key.encode()).hexdigest()[:12]}"


def export_onnx(directory: Path, target: Path) -> None:
    import torch

    log.info("exporting %s to ONNX at %s (once; about half a minute)", directory, target)
    # Eager attention: SDPA's mask code branches in Python on whether the batch has padding, and
    # the exporter would freeze whichever branch the example took.
    model = load_transformer(directory, attn_implementation="eager")

    class LastHidden(torch.nn.Module):
        def __init__(self, bert):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask):
            return self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    ids = torch.ones(2, 16, dtype=torch.long)
    mask = torch.ones_like(ids)
    mask[1, 8:] = 0  # an example with padding, so the mask's data flow is traced
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    axes = {name: {0: "batch", 1: "tokens"} for name in (*OnnxBackend.INPUTS, "last_hidden_state")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's warnings concern branches eager attention avoids
        torch.onnx.export(LastHidden(model), (ids, mask), str(partial),
                          input_names=list(OnnxBackend.INPUTS), output_names=["last_hidden_state"],
                          dynamic_axes=axes, opset_version=17, dynamo=False)
    os.replace(partial, target)


class SentenceTransformersBackend:
    """sentence-transformers `encode`: the reference vectors."""

    name = "st"

    def __init__(self, directory: Path, max_length: int | None = None):
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(str(directory), device="cpu", local_files_only=True)
        if max_length:
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


def default_backend() -> str:
    """onnx when ONNX Runtime and onnx are installed (the faster exact backend), else torch."""
    found = all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "onnx"))
    return "onnx" if found else "torch"


def load_encoder(name: str = DEFAULT_EMBEDDER, backend: str = "auto", cache_size: int = 0,
                 threads: int = 1, max_length: int | None = None) -> Encoder:
    """An Encoder for `name` ('minilm', a model directory or a hub name) on `backend` (see the
    module doc); `cache_size` texts' vectors are kept; `threads` applies to ONNX Runtime;
    `max_length` tokens per text (default: the model's sentence-transformers max_seq_length)."""
    if backend == "auto":
        backend = default_backend()
    if backend not in BACKENDS:
        raise EncoderError(f"Unknown encoder backend {backend!r}: use one of {', '.join(BACKENDS)} or auto.")
    directory = model_directory(name)
    if backend == "st":
        impl = SentenceTransformersBackend(directory, max_length)
    else:
        check_mean_pooling(directory)
        if backend == "torch":
            impl = TorchBackend(directory, max_length)
        else:
            impl = OnnxBackend(directory, max_length, int8=backend == "onnx-int8", threads=threads)
    return Encoder(impl, cache_size=cache_size, name=name)
