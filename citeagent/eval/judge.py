"""The support judge: does a piece of evidence entail a claim?

ALCE's citation metrics and GopherCite's "supported" rate both ask this of a model. Two kinds
of judge plug in here, both Hugging Face sequence classifiers read as (premise, hypothesis):

- the project's own support classifier (a MiniLM cross-encoder with one sigmoid output, trained
  by `citeagent train judge`), the offline default: the one trained into
  $CITEAGENT_HOME/judges/support-minilm, else the one shipped in the package as a LoRA delta over
  the bundled all-MiniLM-L6-v2 (SHIPPED_JUDGE_DIR, under 1 MB), else `citeagent eval` builds it
  on first use (citeagent/train/judge.py `build_default_judge`);
- any NLI model the user names (e.g. `microsoft/deberta-large-mnli`), whose "entailment"
  class probability is the support probability.

Neither can be treated as always right: the trained judge carries its held-out accuracy in
`judge_meta.json`, which every evaluation summary repeats.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Protocol

from citeenv.paths import citeagent_home

DEFAULT_JUDGE_NAME = "support-minilm"
META_FILE = "judge_meta.json"
# The default judge as shipped: adapter weights over the bundled MiniLM (reproduce with
# `citeagent train judge --lora-r 16 --lr 5e-4 --threads 1 --out citeagent/eval/support_judge`, 23 min on a
# loaded 2-core machine; held-out accuracy 0.707, against 0.876 for the fully fine-tuned judge).
SHIPPED_JUDGE_DIR = Path(__file__).resolve().parent / "support_judge"
ADAPTER_FILE = "adapter_config.json"
TRAIN_HINT = (
    "Pass `--judge none` to leave the judge-based metrics (citation recall/precision, supported rate) "
    "unmeasured, or `--judge` with a Hugging Face NLI model name or directory, or train the default "
    "judge with `citeagent train judge --lora-r 16 --lr 5e-4` (a MiniLM cross-encoder trained on HotpotQA "
    "supporting sentences; about 10 minutes on 2 CPU cores)."
)


class JudgeNotFound(FileNotFoundError):
    pass


class SupportJudge(Protocol):
    name: str
    threshold: float
    meta: dict

    def support_probs(self, pairs: list[tuple[str, str]]) -> list[float]:
        """P(premise supports hypothesis) for each (premise, hypothesis)."""
        ...


def claim_text(question: str, statement: str) -> str:
    """The hypothesis a judge reads. Short answers ("1994.", "yes") are not claims on their
    own, so the question goes with them; training and evaluation share this one form."""
    return f"{question.strip()} Answer: {statement.strip()}"


def evidence_text(quotes: list[tuple[str, str]]) -> str:
    """The premise a judge reads: the quotes, each after its page title (as ALCE formats
    documents), one per line."""
    return "\n".join(f"{title}: {text}" if title else text for title, text in quotes)


def default_judge_dir() -> Path:
    return citeagent_home() / "judges" / DEFAULT_JUDGE_NAME


class ClassifierJudge:
    """A sequence classifier used as a judge. One output: sigmoid; several: the probability of
    the class whose label names entailment (or support)."""

    def __init__(self, name_or_path: str, threshold: float = 0.5, batch_size: int = 32, max_length: int = 512, device: str = "auto"):
        import torch  # noqa: F401  (fail here, with the import error, not mid-run)
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from citeagent.models import resolve_device

        device = resolve_device(device)
        local = os.path.isdir(name_or_path)
        self.name = name_or_path
        if local and (Path(name_or_path) / ADAPTER_FILE).is_file():
            self.tokenizer, model = _load_adapter_judge(Path(name_or_path))
        else:
            self.tokenizer = AutoTokenizer.from_pretrained(name_or_path, local_files_only=local)
            model = AutoModelForSequenceClassification.from_pretrained(name_or_path, local_files_only=local)
        self.model = model.to(device).eval()
        self.device = device
        self.batch_size = batch_size
        self.max_length = max_length
        self.meta: dict = {}
        meta_path = Path(name_or_path) / META_FILE
        if local and meta_path.is_file():
            self.meta = json.loads(meta_path.read_text())
        self.threshold = float(self.meta.get("threshold", threshold))
        self._label = self._support_label()
        self._cache: dict[tuple[str, str], float] = {}

    def _support_label(self) -> int | None:
        n = self.model.config.num_labels
        if n == 1:
            return None
        for i, lab in self.model.config.id2label.items():
            if "entail" in str(lab).lower() or "support" in str(lab).lower():
                return int(i)
        raise ValueError(
            f"judge {self.name!r} has {n} classes {self.model.config.id2label} and none is named "
            "entailment or support; use an NLI model, or a one-output support classifier"
        )

    def support_probs(self, pairs: list[tuple[str, str]]) -> list[float]:
        import torch

        todo = list(dict.fromkeys(p for p in pairs if p not in self._cache))
        for i in range(0, len(todo), self.batch_size):
            batch = todo[i : i + self.batch_size]
            enc = self.tokenizer(
                [p for p, _ in batch], [h for _, h in batch],
                truncation=True, max_length=self.max_length, padding=True, return_tensors="pt",
            ).to(self.device)
            with torch.no_grad():
                logits = self.model(**enc).logits
            if self._label is None:
                probs = torch.sigmoid(logits[:, 0])
            else:
                probs = torch.softmax(logits, dim=-1)[:, self._label]
            for pair, p in zip(batch, probs.tolist()):
                self._cache[pair] = float(p)
        return [self._cache[p] for p in pairs]

    def supports(self, premise: str, hypothesis: str) -> bool:
        return self.support_probs([(premise, hypothesis)])[0] >= self.threshold


def _load_adapter_judge(path: Path):
    """(tokenizer, model) of a judge saved as a LoRA delta over the bundled MiniLM, merged into
    plain weights so that scoring costs what the full model costs."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from citeenv.search.embedder import minilm_path

    base_dir = str(minilm_path())
    tokenizer = AutoTokenizer.from_pretrained(base_dir, local_files_only=True)
    base = AutoModelForSequenceClassification.from_pretrained(base_dir, num_labels=1, local_files_only=True)
    model = PeftModel.from_pretrained(base, str(path), local_files_only=True).merge_and_unload()
    return tokenizer, model.to(torch.float32)


def is_default_judge(spec: str | None) -> bool:
    return spec in (None, "", "default", DEFAULT_JUDGE_NAME)


def default_judge_path() -> Path | None:
    """The judge `--judge default` means: one trained into $CITEAGENT_HOME, else the shipped one."""
    for path in (default_judge_dir(), SHIPPED_JUDGE_DIR):
        if (path / "config.json").is_file() or (path / ADAPTER_FILE).is_file():
            return path
    return None


def load_judge(spec: str | None = None, **kw) -> ClassifierJudge | None:
    """'default' / None: the project's trained judge (JudgeNotFound, saying how to train it, when
    it is missing); 'none': no judge (the caller reports the judge metrics as unmeasured);
    a directory or a Hugging Face model name: that classifier."""
    if spec is not None and spec.lower() == "none":
        return None
    if is_default_judge(spec):
        path = default_judge_path()
        if path is None:
            raise JudgeNotFound(f"The support judge is missing: nothing at {default_judge_dir()} and no judge "
                                f"shipped at {SHIPPED_JUDGE_DIR}. {TRAIN_HINT}")
        return ClassifierJudge(str(path), **kw)
    if os.path.exists(spec) and not os.path.isdir(spec):
        raise JudgeNotFound(f"--judge {spec!r} is a file; give a model directory or a Hugging Face model name")
    try:
        return ClassifierJudge(spec, **kw)
    except OSError as e:  # hub miss offline, or a name that does not exist
        raise JudgeNotFound(f"Could not load the judge {spec!r}: {e}. {TRAIN_HINT}") from e
