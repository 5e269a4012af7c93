"""What the safety models read: frozen MiniLM sentence embeddings of the exchange, combined into
one feature vector per (question, answer). The models on top are small heads (a few thousand
weights), so they train in minutes on two cores and ship inside the repository.

Feature kinds (a trained head records its kind; one definition here serves training and scoring):
- "response": the answer, its quotes included (harm can sit in a quote as well as in the text);
- "exchange": "Human: <last human turn>\\nAssistant: <response>";
- "response+exchange", "exchange,turn*response" (the element-wise product lets a linear head
  weigh the response by what was asked), "all": concatenations of those;
- "qa": the text reward models and judges read (`render_for_model`), for the rule classifier.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from citeagent.answer import Answer, render_for_model

FEATURE_KINDS = ("response", "exchange", "response+exchange", "response,turn*response", "exchange,turn*response",
                 "all", "qa")
# the kinds that are a concatenation of whole-text embeddings, so an encoder fine-tuned under them
# (citeagent.safety.finetuned) produces them: kind -> the texts, in order
FINETUNE_PARTS = {"response": ["response"], "exchange": ["exchange"], "response+exchange": ["response", "exchange"]}
_HUMAN = "Human:"


def last_turn(question: str) -> str:
    """The last human turn of an HH-RLHF style dialogue; a plain question is its own last turn."""
    i = question.rfind(_HUMAN)
    return question[i + len(_HUMAN):].strip() if i >= 0 else question.strip()


def response_text(answer: Answer) -> str:
    if answer.declined:
        return "(declined to answer)"
    quotes = " ".join(f'"{q.text}"' for q in answer.quotes)
    return f"{answer.text} {quotes}".strip()


class TextEncoder:
    """MiniLM sentence embeddings (unit length), memoised per text: the red-team evaluation and
    best-of-n score many candidates that share their question. A trainer can keep the memo on disk
    (`load_cache` / `save_cache`): embedding HH-RLHF's 9,000 texts is most of its time on a CPU, and
    the embeddings of a fixed model never change."""

    def __init__(self, name: str | None = None, device: str = "cpu", batch_size: int = 64, cache_size: int = 20000):
        # The project's encoder (citeenv.search.encoder): sentence-transformers' vectors, computed
        # without its call overhead; `device` is kept for callers, the encoder runs on the CPU.
        from citeenv.search.encoder import load_encoder

        self.model = load_encoder(name or "minilm")
        self.batch_size = batch_size
        self.cache: dict[str, np.ndarray] = {}
        self.cache_size = cache_size

    def load_cache(self, path) -> int:
        """Add the embeddings saved in `path` (an .npz of texts and vectors) to the memo; returns how many."""
        from pathlib import Path

        path = Path(path)
        if not path.is_file():
            return 0
        data = np.load(path, allow_pickle=False)
        texts, vecs = data["texts"], data["vectors"]
        if vecs.ndim != 2 or vecs.shape[1] != self.dim or len(texts) != len(vecs):
            return 0  # another encoder's cache: ignore it rather than mix embeddings
        self.cache.update(zip((str(t) for t in texts), vecs.astype(np.float32)))
        return len(texts)

    def save_cache(self, path) -> None:
        import os
        import tempfile
        from pathlib import Path

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".npz", dir=path.parent)
        os.close(fd)
        try:
            texts = list(self.cache)
            np.savez(tmp, texts=np.array(texts, dtype=str), vectors=np.stack([self.cache[t] for t in texts]))
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @property
    def dim(self) -> int:
        return int(self.model.dim)

    def encode(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        todo = list(dict.fromkeys(t for t in texts if t not in self.cache))
        if todo:
            chunks = range(0, len(todo), 1024)
            if progress:
                from tqdm import tqdm

                chunks = tqdm(chunks, desc="embedding", unit="1024 texts")
            vecs = np.concatenate([self.model.encode(todo[i:i + 1024], batch_size=self.batch_size) for i in chunks])
            if len(self.cache) + len(todo) > self.cache_size:
                self.cache.clear()
            self.cache.update(zip(todo, vecs.astype(np.float32)))
            if len(todo) > self.cache_size:  # a huge batch: keep what it needs for this call
                lookup = dict(zip(todo, vecs.astype(np.float32)))
                return np.stack([self.cache.get(t, lookup.get(t)) for t in texts])
        return np.stack([self.cache[t] for t in texts]) if texts else np.zeros((0, self.dim), np.float32)


def feature_texts(kind: str, questions: Sequence[str], answers: Sequence[Answer]) -> dict[str, list[str]]:
    """The texts a feature kind embeds, by part name."""
    if kind not in FEATURE_KINDS:
        raise ValueError(f"unknown feature kind {kind!r}; use one of {', '.join(FEATURE_KINDS)}")
    if len(questions) != len(answers):
        raise ValueError(f"got {len(questions)} questions but {len(answers)} answers")
    if kind == "qa":
        return {"qa": [render_for_model(q, a) for q, a in zip(questions, answers)]}
    turns = [last_turn(q) for q in questions]
    responses = [response_text(a) for a in answers]
    parts = {"response": responses, "turn": turns,
             "exchange": [f"Human: {t}\nAssistant: {r}" for t, r in zip(turns, responses)]}
    return parts


def features(encoder: TextEncoder, kind: str, questions: Sequence[str], answers: Sequence[Answer]) -> np.ndarray:
    """One row of features per (question, answer)."""
    parts = feature_texts(kind, questions, answers)
    needed = {"qa": ["qa"], "response": ["response"], "exchange": ["exchange"],
              "response+exchange": ["response", "exchange"], "response,turn*response": ["response", "turn"],
              "exchange,turn*response": ["exchange", "response", "turn"], "all": ["response", "exchange", "turn"]}[kind]
    e = {name: encoder.encode(parts[name]) for name in needed}
    if kind in ("qa", "response", "exchange"):
        return e[kind]
    if kind == "response+exchange":
        return np.concatenate([e["response"], e["exchange"]], axis=1)
    if kind == "response,turn*response":
        return np.concatenate([e["response"], e["turn"] * e["response"]], axis=1)
    if kind == "exchange,turn*response":
        return np.concatenate([e["exchange"], e["turn"] * e["response"]], axis=1)
    return np.concatenate([e["response"], e["exchange"], e["turn"] * e["response"]], axis=1)
