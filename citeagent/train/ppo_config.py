"""The configuration of `citeagent train ppo` (the algorithm is citeagent/train/ppo.py).

Kept apart from ppo.py so that the flags can be parsed and checked, and the run's files looked
at, before torch is imported.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from pathlib import Path

DATASETS = ("hotpotqa",)
DTYPES = ("float32", "bfloat16", "float16")
CHECKPOINT = "checkpoint"
TRAINER_STATE = "trainer_state.json"


# --- configuration ------------------------------------------------------------------------------

@dataclass
class PPOConfig:
    policy: str = field(default="runs/bc", metadata={"help": (
        "behaviour-cloned model dir PPO starts from; it is also the KL reference")})
    reward_model: str = field(default="", metadata={"help": (
        "reward model dir (default: the one `citeagent train rm` saves)")})
    combined_reward: str = field(default="", metadata={"help": (
        "reward episodes with the combined reward instead of the reward model alone: 'default' or weights such "
        "as support=1,harmless=1,rule=2 (Sparrow's combination with the harmlessness PM and rule penalties; the "
        "support model is --reward-model)"), "nargs": "?", "const": "default", "metavar": "WEIGHTS"})
    dataset: str = field(default="hotpotqa", metadata={"help": (
        "training questions: hotpotqa = the non-held-out HotpotQA questions")})
    out: str = field(default="runs/ppo", metadata={"help": "run dir: log.jsonl, log.png, checkpoint/, final/"})
    resume: bool = field(default=False, metadata={"help": "continue the run in --out from its checkpoint"})
    iterations: int = 20
    episodes_per_iter: int = 16
    rollout_batch_size: int = field(default=8, metadata={"help": (
        "episodes stepped together, one batched model call per step")})
    max_actions: int = 10
    temperature: float = 1.0
    no_answer_reward: float = field(default=-1.0, metadata={"help": "reward of a declined or truncated episode"})
    kl_coef: float = field(default=0.02, metadata={"help": "per-token KL penalty against the --policy model (>= 0)"})
    adaptive_kl: bool = field(default=False, metadata={"help": (
        "adapt --kl-coef towards --target-kl (Ziegler et al. 2019)")})
    target_kl: float = field(default=6.0, metadata={"help": "KL per episode the adaptive controller aims at"})
    kl_horizon: int = 10000  # episodes, for the adaptive controller
    gamma: float = 1.0
    lam: float = 0.95
    clip: float = 0.2
    vf_coef: float = 0.5
    vf_clip: float = 0.2
    ent_coef: float = 0.0
    ppo_epochs: int = 2
    stop_approx_kl: float | None = field(default=None, metadata={"help": (
        "skip an iteration's remaining PPO epochs once an epoch's mean approx KL exceeds this (CleanRL's "
        "target-kl; e.g. 0.02); unset: always run --ppo-epochs")})
    minibatch_size: int = field(default=8, metadata={"help": "rows (steps) per optimizer step"})
    lr: float | None = field(default=None, metadata={"help": "learning rate (default 1e-4 with LoRA, 1e-5 without)"})
    value_lr: float = 1e-4  # the value head starts at zero and must catch up quickly
    lora: bool = field(default=True, metadata={"help": (
        "train LoRA adapters (the reference is the model with them off); --no-lora trains every weight")})
    lora_r: int = 16
    lora_alpha: int = 32
    # LoRA on the top N decoder layers only (0: all): the backward pass stops below them, which is
    # what makes an hour of PPO on 2 CPU cores worth running.
    lora_layers: int = field(default=0, metadata={"help": (
        "adapt only the top N decoder layers (0: all); the backward pass stops below them")})
    # With --lora-layers N the layers below the top N are frozen: run them once a row an iteration
    # and keep their output, instead of in every forward (old and reference log-probs, each epoch).
    cache_frozen_layers: bool = field(default=True, metadata={"help": (
        "with --lora-layers N, run the frozen layers below the top N once a row an iteration and keep their "
        "output (memory: rows x tokens x hidden size)")})
    max_grad_norm: float = 1.0
    whiten_advantages: bool = True
    seed: int = 0
    threads: int = field(default=0, metadata={"help": "torch CPU threads (0: torch's default)"})
    checkpoint_every: int = 1
    dtype: str = field(default="float32", metadata={"help": (
        "float32, bfloat16 or float16 weights (bfloat16 on GPUs)")})

    def __post_init__(self):
        def finite(name, value):
            if not (isinstance(value, (int, float)) and math.isfinite(value)):
                raise ValueError(f"--{name.replace('_', '-')} must be a finite number (got {value!r})")

        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, float) or (isinstance(v, int) and not isinstance(v, bool)):
                finite(f.name, v)
        if self.lr is not None:
            finite("lr", self.lr)
        if self.stop_approx_kl is not None:
            finite("stop_approx_kl", self.stop_approx_kl)
        if self.kl_coef < 0:
            raise ValueError(f"--kl-coef must be >= 0 (got {self.kl_coef}); 0 switches the KL penalty off")
        checks = [
            ("iterations", self.iterations >= 1, ">= 1"), ("episodes_per_iter", self.episodes_per_iter >= 1, ">= 1"),
            ("rollout_batch_size", self.rollout_batch_size >= 1, ">= 1"),
            ("max_actions", self.max_actions >= 2, ">= 2 (a search and an answer)"),
            ("temperature", self.temperature > 0, "> 0 (PPO needs a sampling policy)"),
            ("target_kl", self.target_kl > 0, "> 0"), ("kl_horizon", self.kl_horizon >= 1, ">= 1"),
            ("gamma", 0 <= self.gamma <= 1, "in [0, 1]"), ("lam", 0 <= self.lam <= 1, "in [0, 1]"),
            ("clip", self.clip > 0, "> 0"), ("vf_clip", self.vf_clip > 0, "> 0"),
            ("vf_coef", self.vf_coef >= 0, ">= 0"),
            ("ppo_epochs", self.ppo_epochs >= 1, ">= 1"), ("minibatch_size", self.minibatch_size >= 1, ">= 1"),
            ("lr", self.lr is None or self.lr > 0, "> 0"), ("value_lr", self.value_lr > 0, "> 0"),
            ("stop_approx_kl", self.stop_approx_kl is None or self.stop_approx_kl >= 0, ">= 0 (or none)"),
            ("lora_r", self.lora_r >= 1, ">= 1"), ("lora_layers", self.lora_layers >= 0, ">= 0 (0: all layers)"),
            ("max_grad_norm", self.max_grad_norm > 0, "> 0"),
            ("checkpoint_every", self.checkpoint_every >= 1, ">= 1"), ("threads", self.threads >= 0, ">= 0"),
        ]
        for name, ok, rule in checks:
            if not ok:
                raise ValueError(f"--{name.replace('_', '-')} must be {rule} (got {getattr(self, name)})")
        if self.dataset not in DATASETS:
            raise ValueError(f"--dataset must be one of {', '.join(DATASETS)} (got {self.dataset!r})")
        if self.dtype not in DTYPES:
            raise ValueError(f"--dtype must be one of {', '.join(DTYPES)} (got {self.dtype!r})")
        if not self.out:
            raise ValueError("--out must name a directory")
        if self.combined_reward:
            from citeagent.safety.combined import parse_weights

            parse_weights(self.combined_reward)  # bad weights fail here, before any model loads

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else (1e-4 if self.lora else 1e-5)

    @property
    def out_dir(self) -> Path:
        return Path(self.out)

    def reward_model_dir(self) -> Path:
        from citeagent.reward import default_reward_model_dir

        return Path(self.reward_model) if self.reward_model else default_reward_model_dir()

    def check(self, need_reward_model: bool = True) -> None:
        """The checks that look at files, run before anything heavy is loaded."""
        from citeagent.models import DEFAULT_NAMES

        if self.policy not in DEFAULT_NAMES and not (Path(self.policy) / "config.json").is_file():
            raise FileNotFoundError(
                f"--policy {self.policy}: no model there (no config.json). PPO starts from a behaviour-cloned "
                "policy: train one with `citeagent train bc`, or pass --policy smollm2 to start from the untrained "
                "model.")
        rm = self.reward_model_dir()
        if need_reward_model and not (rm / "config.json").is_file():
            raise FileNotFoundError(
                f"--reward-model {rm}: no reward model there (no config.json). Train one with `citeagent train rm` "
                "(or pass --reward-model DIR).")
        ckpt = find_checkpoint(self.out_dir)
        if self.resume and ckpt is None:
            raise FileNotFoundError(f"--resume: no checkpoint in {self.out_dir} to continue from; drop --resume to "
                                    "start.")
        if not self.resume and ckpt is not None:
            raise ValueError(f"--out {self.out_dir} already holds a PPO run ({ckpt.name}/); pass --resume to continue "
                             "it, or choose another --out.")


def find_checkpoint(out: Path) -> Path | None:
    """<out>/checkpoint, or the previous one if a save died between its two renames."""
    for name in (CHECKPOINT, f".{CHECKPOINT}.old"):
        if (out / name / TRAINER_STATE).is_file():
            return out / name
    return None
