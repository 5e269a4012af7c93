"""The reward model: a sequence classifier with one scalar output that scores a cited answer.

The input is `render_for_model(question, answer)`, the project's one text form of (question,
answer, quotes). Long questions (HH-RLHF dialogues) are cut from the front so that the latest turn,
the answer and its quotes survive truncation; what still does not fit is cut from the end.
"""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import torch

from citeagent.answer import Answer, render_for_model
from citeagent.reward import default_reward_model_dir

META_FILE = "citeagent_reward.json"
FORMAT_VERSION = 1
BACKBONES_HELP = "minilm (offline default), tiny (random, for tests), policy[:NAME] (the policy LM with a scalar head), or any Hugging Face name/path"


def resolve_backbone(name: str) -> str:
    """Map a backbone name to a path or hub id ('tiny' has none: it is built from a config)."""
    if name in ("", "minilm", "all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"):
        from citeenv.search.embedder import minilm_path

        return str(minilm_path())
    if name == "policy" or name.startswith("policy:"):
        from citeagent.models import DEFAULT_NAMES, smollm2_dir

        sub = name.partition(":")[2] or None
        return str(smollm2_dir()) if sub in DEFAULT_NAMES else sub
    return name


def build_backbone(name: str, seed: int = 0):
    """(model with a freshly initialised scalar head, tokenizer) for a backbone name."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    if name == "tiny":
        # A 2-layer BERT with MiniLM's vocabulary: fast enough for unit tests, same code path as MiniLM.
        tokenizer = AutoTokenizer.from_pretrained(resolve_backbone("minilm"))
        config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                            intermediate_size=64, max_position_embeddings=512, num_labels=1)
        model = BertForSequenceClassification(config)
    else:
        path = resolve_backbone(name)
        local = os.path.isdir(path)
        try:
            tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=local)
            model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, local_files_only=local,
                                                                       dtype=torch.float32)
        except OSError as e:
            raise OSError(
                f"Cannot load backbone {name!r} ({path}): {str(e).splitlines()[0] if str(e) else type(e).__name__}. "
                "Use --backbone minilm (offline), a local model directory, or a hub name already in the cache."
            ) from e
    if tokenizer.pad_token is None:  # causal LMs: pad with eos; the head reads the last non-pad token
        tokenizer.pad_token = tokenizer.eos_token
    model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def _cut_question(tokenizer, question: str, budget: int) -> str:
    if budget <= 0 or len(question) < budget * 2:  # no token is shorter than half a char on average
        return question
    if getattr(tokenizer, "is_fast", False):
        offsets = tokenizer(question, add_special_tokens=False, return_offsets_mapping=True, verbose=False)["offset_mapping"]
        if len(offsets) <= budget:
            return question
        return "..." + question[offsets[-budget][0]:]
    return "..." + question[-budget * 4:]  # slow tokenizers: about four characters a token


def encode_answer(tokenizer, question: str, answer: Answer, max_length: int, max_question_tokens: int) -> list[int]:
    """Token ids of (question, answer, quotes) as the reward model reads them."""
    text = render_for_model(_cut_question(tokenizer, question, max_question_tokens), answer)
    return tokenizer(text, truncation=True, max_length=max_length)["input_ids"]


class RewardModel:
    """Scores cited answers; higher is better. P(a better than b) = sigmoid(score(a) - score(b))."""

    def __init__(self, model, tokenizer, max_length: int = 256, max_question_tokens: int = 96,
                 meta: dict | None = None, device: str = "cpu"):
        self.model = model.to(device)
        self.tokenizer = tokenizer
        self.max_length = int(max_length)
        self.max_question_tokens = int(max_question_tokens)
        self.meta = dict(meta or {})
        self.device = device

    def encode(self, question: str, answer: Answer) -> list[int]:
        return encode_answer(self.tokenizer, question, answer, self.max_length, self.max_question_tokens)

    # --- scoring ----------------------------------------------------------------------------------
    @torch.inference_mode()
    def score_ids(self, ids: list[list[int]], batch_size: int = 32) -> list[float]:
        self.model.eval()
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))  # similar lengths share a batch: less padding
        out = [0.0] * len(ids)
        pad = self.tokenizer.pad_token_id
        for s in range(0, len(order), batch_size):
            idx = order[s:s + batch_size]
            width = max(len(ids[i]) for i in idx)
            input_ids = torch.full((len(idx), width), pad, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for row, i in enumerate(idx):
                input_ids[row, :len(ids[i])] = torch.tensor(ids[i])
                mask[row, :len(ids[i])] = 1
            logits = self.model(input_ids=input_ids.to(self.device), attention_mask=mask.to(self.device)).logits
            for row, i in enumerate(idx):
                out[i] = float(logits[row, 0])
        return out

    def score_batch(self, questions: list[str], answers: list[Answer], batch_size: int = 32) -> list[float]:
        if len(questions) != len(answers):
            raise ValueError(f"score_batch got {len(questions)} questions but {len(answers)} answers")
        return self.score_ids([self.encode(q, a) for q, a in zip(questions, answers)], batch_size)

    def score(self, question: str, answer: Answer) -> float:
        return self.score_batch([question], [answer])[0]

    def prefer_prob(self, question: str, a: Answer, b: Answer) -> float:
        """P(a is better than b) under the Bradley-Terry model."""
        sa, sb = self.score_batch([question, question], [a, b])
        return 1.0 / (1.0 + math.exp(-(sa - sb)))

    # --- saving -----------------------------------------------------------------------------------
    def save(self, path: str | Path, extra: dict | None = None) -> Path:
        """Write the model into `path`, replacing what was there only once it is complete, so that
        a reader never loads half a model and an interrupted save leaves the old one in place."""
        from citeagent.train.common import atomic_dir

        path = Path(path)
        meta = {**self.meta, **(extra or {}), "format": FORMAT_VERSION, "max_length": self.max_length,
                "max_question_tokens": self.max_question_tokens, "rendering": "citeagent.answer.render_for_model",
                "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}

        with atomic_dir(path) as tmp:
            self.model.save_pretrained(tmp)
            self.tokenizer.save_pretrained(tmp)
            (tmp / META_FILE).write_text(json.dumps(meta, indent=2, ensure_ascii=False))
        self.meta = meta
        return path


def load_reward_model(path: str | Path | None = None, device: str = "auto") -> RewardModel:
    """Load a saved reward model (None or "default": the one `citeagent train rm` saves by default).
    device: "auto" is the first CUDA GPU if there is one, else the CPU."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from citeagent.models import resolve_device

    device = resolve_device(device)
    path = Path(path) if path and str(path) != "default" else default_reward_model_dir()
    if not (path / "config.json").is_file():
        hint = " Train one with `citeagent train rm` first." if path == default_reward_model_dir() else ""
        raise FileNotFoundError(f"No reward model at {path} (no config.json).{hint}")
    meta = json.loads((path / META_FILE).read_text()) if (path / META_FILE).is_file() else {}
    if meta.get("format", FORMAT_VERSION) > FORMAT_VERSION:
        raise ValueError(f"{path} was saved by a newer citeagent (format {meta['format']}); upgrade citeagent.")
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModelForSequenceClassification.from_pretrained(path, local_files_only=True, dtype=torch.float32)
    if model.config.num_labels != 1:
        raise ValueError(f"{path} has {model.config.num_labels} outputs; a reward model has exactly one.")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.config.pad_token_id = tokenizer.pad_token_id
    return RewardModel(model, tokenizer, max_length=meta.get("max_length", 512),
                       max_question_tokens=meta.get("max_question_tokens", 0), meta=meta, device=device)
