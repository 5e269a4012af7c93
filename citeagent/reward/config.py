"""The configuration of `citeagent train rm`: one dataclass, every field a CLI flag.

Kept apart from the trainer so that the command line can be parsed, and bad data reported,
without importing torch.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from citeagent.reward.schema import LABEL_MODES


def default_reward_model_dir() -> Path:
    """Where `citeagent train rm` saves the default model and where others load it from."""
    from citeenv.paths import citeagent_home

    return citeagent_home() / "reward" / "minilm-default"


@dataclass
class RMConfig:
    data: str = "hh-rlhf,lfqa,hotpotqa-synth"  # sources, see citeagent.reward.sources
    backbone: str = "minilm"
    out: str = ""  # default: citeagent_home()/reward/minilm-default for minilm, else .../reward/<backbone>
    label_mode: str = "webgpt"  # webgpt: ties 0.5, others hard by sign; graded: p = (1 + score_0) / 2
    heldout_frac: float = 0.2  # of each source's questions, never trained on
    exclude_questions: str = ""  # JSONL of questions (an eval data set): their pairs are dropped from every source
    max_train_pairs: int | None = None  # per source
    max_heldout_pairs: int | None = None  # per source
    max_length: int = 256  # tokens per (question, answer, quotes)
    max_question_tokens: int = 96  # long dialogues keep their last turns
    epochs: float = 1.0
    max_steps: int = -1
    batch_size: int = 8  # pairs per step
    lr: float = 1e-4  # the backbone's
    head_lr: float | None = 1e-3  # the new scalar head's (None: the same as lr)
    weight_decay: float = 0.0
    warmup: float = 0.05  # fraction of the steps
    center_rewards: float | None = 0.01  # keeps scores near 0 so that they compare across runs
    group_by_length: bool = True
    seed: int = 0
    threads: int = 0  # torch CPU threads; 0 leaves torch's default
    n_boot: int = 1000
    logging_steps: int = 10

    def __post_init__(self):
        if self.label_mode not in LABEL_MODES:
            raise ValueError(f"--label-mode must be one of {', '.join(LABEL_MODES)} (got {self.label_mode!r})")
        if self.batch_size < 1 or self.max_length < 16:
            raise ValueError("--batch-size must be >= 1 and --max-length >= 16")

    def out_dir(self) -> Path:
        if self.out:
            return Path(self.out)
        if self.backbone == "minilm":
            return default_reward_model_dir()
        return default_reward_model_dir().parent / self.backbone.replace("/", "--").replace(":", "-")
