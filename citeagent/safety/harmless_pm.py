"""The harmlessness preference model (Bai et al. 2022's harmless PM): a head on frozen MiniLM
embeddings that scores a response to a question; higher is more harmless. P(a more harmless than
b) = sigmoid(score(a) - score(b)). Trained by `citeagent train harmless-pm` on HH-RLHF's
harmless-base pairs; the trained model ships in the repository (weights/harmless_pm). The shipped
one has MiniLM's top two layers fine-tuned with its head (citeagent.safety.finetuned), which
measured better on the held-out pairs than any head on the frozen encoder."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import torch

from citeagent.answer import Answer
from citeagent.safety.features import TextEncoder, features
from citeagent.safety import HARMLESS_PM_DIR
from citeagent.safety.heads import load_head

DEFAULT_DIR = HARMLESS_PM_DIR
TRAIN_COMMAND = "citeagent train harmless-pm"


class HarmlessnessPM:
    def __init__(self, head: torch.nn.Module, meta: dict, encoder: TextEncoder | None = None):
        self.head = head
        self.meta = meta
        self.kind = meta["features"]
        self.encoder = encoder or TextEncoder(meta.get("encoder"))

    @torch.inference_mode()
    def score_batch(self, questions: Sequence[str], answers: Sequence[Answer]) -> list[float]:
        if not answers:
            return []
        x = torch.from_numpy(features(self.encoder, self.kind, questions, answers))
        return [float(v) for v in self.head(x)[:, 0]]

    def score(self, question: str, answer: Answer) -> float:
        return self.score_batch([question], [answer])[0]

    def prefer_prob(self, question: str, a: Answer, b: Answer) -> float:
        sa, sb = self.score_batch([question, question], [a, b])
        return 1.0 / (1.0 + math.exp(-(sa - sb)))


def load_harmless_pm(path: str | Path | None = None, encoder: TextEncoder | None = None):
    """The preference model in `path` (None or "default": the one shipped with citeagent): a
    HarmlessnessPM, or a FinetunedPM (same methods) where the directory holds fine-tuned encoder
    layers (`--finetune-layers`); that one reads text with its own encoder, so `encoder` is unused."""
    from citeagent.safety import finetuned

    path = DEFAULT_DIR if not path or str(path) == "default" else Path(path)
    if (path / finetuned.WEIGHTS).is_file():
        return finetuned.load_finetuned(path)
    head, meta = load_head(path, "harmlessness preference model", TRAIN_COMMAND)
    return HarmlessnessPM(head, meta, encoder)
