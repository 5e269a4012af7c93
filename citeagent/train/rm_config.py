"""The configuration of `citeagent train rm`: one dataclass, every field a CLI flag.

Kept apart from the trainer (rm.py) so that the command line can be parsed, and bad data
reported, without importing torch.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from citeagent.reward import default_reward_model_dir
from citeagent.reward.schema import LABEL_MODES


@dataclass
class RMConfig:
    data: str = field(default="hh-rlhf,lfqa,hotpotqa-synth", metadata={"help": (
        "comma-separated sources: webgpt, hh-rlhf[:split+split], lfqa, hotpotqa-synth[:N], hotpotqa-gold:PATH, "
        "or a JSONL/datasets path in the webgpt_comparisons schema (e.g. `citeagent label export`)")})
    backbone: str = field(default="minilm", metadata={"help": (
        "minilm (offline default), tiny (tests), policy[:NAME] (policy LM + scalar head), or a HF name/path")})
    out: str = field(default="", metadata={"help": (
        "directory the model and its report are saved to (default: $CITEAGENT_HOME/reward/minilm-default for "
        "minilm, else .../reward/<backbone>)")})
    label_mode: str = field(default="webgpt", metadata={"help": (
        "webgpt: ties are 0.5 and every other score a hard label (WebGPT); graded: p = (1 + score_0) / 2")})
    heldout_frac: float = field(default=0.2, metadata={"help": "fraction of each source's questions held out "
                                                               "for the report, never trained on"})
    exclude_questions: str = field(default="", metadata={"help": (
        "a JSONL data set (one {\"question\": ..., \"answers\": [...]} a line, e.g. the one `citeagent eval` will "
        "test on): every pair about one of its questions is dropped from every source")})
    max_train_pairs: int | None = field(default=None, metadata={"help": "at most this many training pairs per "
                                                                        "source (default all)"})
    max_heldout_pairs: int | None = field(default=None, metadata={"help": "at most this many held-out pairs per "
                                                                          "source (default all)"})
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
    threads: int = field(default=0, metadata={"help": "torch CPU threads (0: torch's default)"})
    n_boot: int = field(default=1000, metadata={"help": "bootstrap resamples for the accuracy intervals"})
    logging_steps: int = 10
    eval_only: bool = field(default=False, metadata={"help": "do not train: evaluate the model already in --out "
                                                             "on the held-out pairs of --data"})

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
