"""Behaviour cloning of the browsing policy on demonstrations (WebGPT's first training stage).

A demonstration (citeagent/browse.py's format: people with `citeagent browse`, or the scripted
expert of train/expert.py) is a list of steps {observation, action, error}. Every step is one
training example:

    prompt     = build_prompt(tokenizer, observation, ...)   exactly what the LM policy sees
    completion = action + command_end_token(tokenizer)       the command, then EOS

and only the completion's tokens carry loss. Examples are tokenised here, prompt and completion
separately and concatenated, because that is what the constrained decoder conditions on: the
prompt's ids, then the command's ids (tokenising the joined text could merge tokens across the
boundary). TRL's SFTTrainer then trains on the ids with `completion_only_loss`, with a LoRA
adapter (merged before saving) or all weights.

Everything that can be checked without a model is checked first: missing or empty files, lines
that are not records, and any step whose command the environment rejected or cannot parse, named
by file, line and step. A demonstration teaches what it shows, so a rejected command would teach
the policy to make it.
"""
from __future__ import annotations

import json
import random
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from citeagent.train import CPU_BROWSER, CPU_POLICY
from citeagent.train.common import device_trainer_args, top_layers
from citeenv.browser import BrowserConfig
from citeenv.commands import CommandError, parse_command
from citeenv.documents import normalize_ws
from citeenv.jsonl import iter_jsonl
from citeenv.observation import asks_for_answer

LORA_TARGETS = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"
REPORT_FILE = "bc_report.json"


@dataclass
class BCConfig:
    demos: list[str] = field(default_factory=list, metadata={"help": (
        "demonstration JSONL files (`citeagent browse`, `citeagent train demos`), space- or comma-separated")})
    model: str = field(default="smollm2", metadata={"help": "smollm2 (the bundled SmolLM2-135M-Instruct) or a "
                                                            "Hugging Face name / model directory"})
    out: str = field(default="runs/bc", metadata={"help": "directory the trained model, its policy options and "
                                                          "bc_report.json are saved to"})
    lora: bool = field(default=True, metadata={"help": "train a LoRA adapter (merged before saving); --no-lora "
                                                       "trains every weight"})
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_targets: str = LORA_TARGETS
    # Nothing below the lowest adapted layer needs gradients, so the backward pass stops there: the
    # CPU configuration's main saving.
    lora_layers: int = field(default=0, metadata={"help": "adapt only the top N decoder layers (0: all); the "
                                                          "backward pass stops below them"})
    answer_repeats: int = field(default=1, metadata={"help": "how many times each answering step is used per "
                                                             "epoch (the answer is 1 step in ~10)"})
    epochs: float = 2.0
    lr: float | None = field(default=None, metadata={"help": "learning rate (default: 2e-4 with LoRA, 5e-5 full)"})
    batch_size: int = 8
    grad_accum: int = 1
    max_length: int = field(default=512, metadata={"help": "prompt + command tokens; longer examples are dropped "
                                                           "and counted"})
    warmup: float = 0.03  # fraction of the steps
    weight_decay: float = 0.0
    max_steps: int | None = field(default=None, metadata={"help": "stop after this many optimiser steps (default: "
                                                                  "the epochs decide)"})
    heldout: float = field(default=0.1, metadata={"help": "fraction of episodes held out for the validation loss "
                                                          "(0: none)"})
    threads: int = field(default=0, metadata={"help": "torch CPU threads (0: torch's default)"})
    seed: int = 0
    logging_steps: int = 10
    system_prompt: str = CPU_POLICY["system_prompt"]
    max_observation_tokens: int = CPU_POLICY["max_observation_tokens"]
    # The browser layout the trained policy will browse with (saved with the model); it should be
    # the layout the demonstrations were recorded in (`citeagent train demos` uses this one).
    browser: dict = field(default_factory=lambda: dict(CPU_BROWSER), init=False)

    def __post_init__(self):
        if isinstance(self.demos, str):
            self.demos = [self.demos]
        self.demos = [p.strip() for arg in self.demos for p in arg.split(",") if p.strip()]
        if not self.demos:
            raise ValueError("No demonstration files: pass --demos a.jsonl[,b.jsonl] (from `citeagent browse` "
                             "or `citeagent train demos`).")
        if self.lr is None:
            self.lr = 2e-4 if self.lora else 5e-5
        checks = [
            (self.lr > 0, f"--lr must be > 0 (got {self.lr})"),
            (self.epochs > 0, f"--epochs must be > 0 (got {self.epochs})"),
            (self.batch_size >= 1, f"--batch-size must be >= 1 (got {self.batch_size})"),
            (self.grad_accum >= 1, f"--grad-accum must be >= 1 (got {self.grad_accum})"),
            (self.max_length >= 16, f"--max-length must be >= 16 tokens (got {self.max_length})"),
            (self.max_steps is None or self.max_steps >= 1, f"--max-steps must be >= 1 (got {self.max_steps})"),
            (0 <= self.heldout < 1, f"--heldout is a fraction of the episodes in [0, 1) (got {self.heldout})"),
            (0 <= self.warmup < 1, f"--warmup is a fraction of the steps in [0, 1) (got {self.warmup})"),
            (self.max_observation_tokens >= 32,
             f"--max-observation-tokens must be >= 32 (got {self.max_observation_tokens})"),
            (not self.lora or self.lora_r >= 1, f"--lora-r must be >= 1 (got {self.lora_r})"),
            (self.answer_repeats >= 1, f"--answer-repeats must be >= 1 (got {self.answer_repeats})"),
            (self.lora_layers >= 0, f"--lora-layers must be >= 0, 0 meaning all layers (got {self.lora_layers})"),
            (not self.lora or bool(self.targets()), "--lora-targets names no module"),
            (self.threads >= 0, f"--threads must be >= 0 (got {self.threads})"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        unknown = set(self.browser) - {f.name for f in fields(BrowserConfig)}
        if unknown:
            raise ValueError(f"unknown BrowserConfig field(s) in browser: {sorted(unknown)}")

    def targets(self) -> list[str]:
        return [t.strip() for t in self.lora_targets.split(",") if t.strip()]

    def policy_options(self) -> dict:
        """The LMPolicyConfig overrides the trained model is saved with."""
        return CPU_POLICY | {"system_prompt": self.system_prompt, "max_observation_tokens": self.max_observation_tokens}


# --- demonstrations -> checked steps ------------------------------------------------------------------

@dataclass
class Episode:
    where: str  # "file, line n", for messages
    source: str  # "expert", "human", ...
    steps: list[tuple[str, str]]  # (observation, action)
    answering: list[bool] = field(default_factory=list)  # per step: the answering phase's


def is_answer_step(step: dict) -> bool:
    """A recorded step of the answering phase: its recorded phase (the browser's info), or for files
    recorded before steps carried one, the environment's reading of the observation."""
    if "phase" in step:
        return step["phase"] == "answer"
    return asks_for_answer(step["observation"])


def check_step(step, config: BrowserConfig) -> tuple[str, str] | str:
    """(observation, action) of a recorded step, or why it cannot be trained on."""
    if not (isinstance(step, dict) and isinstance(step.get("observation"), str) and isinstance(step.get("action"), str)):
        return "a step needs the text fields 'observation' and 'action'"
    obs, action = step["observation"], step["action"]
    if step.get("error") is not None:
        return f"the environment rejected the action {action[:120]!r}: {step['error']}"
    if is_answer_step(step):
        text = normalize_ws(action)  # the browser reads an answer whitespace-normalised
        return (obs, text) if text else "the answer is empty"
    cmd = parse_command(action, max_arg_chars=max(config.max_quote_chars * 2 + 1, config.max_query_chars))
    if isinstance(cmd, CommandError):
        return f"the action {action[:120]!r} is not a command: {cmd.message}"
    return obs, action.strip()


def read_demonstrations(paths: list[str], config: BrowserConfig | None = None) -> tuple[list[Episode], dict]:
    """Every complete episode of every file, each step checked; (episodes, counts). Raises
    FileNotFoundError / ValueError naming the file, line and step of the first problem."""
    config = config or BrowserConfig()
    episodes, counts = [], {"files": len(paths), "episodes": 0, "incomplete_skipped": 0, "by_source": {}}
    for path in paths:
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"No demonstration file {path}: record some with `citeagent browse --out {path}` "
                                    "or `citeagent train demos --out PATH`.")
        n_records = 0
        for lineno, rec in iter_jsonl(p):  # a line that is no JSON object stops here, named
            where = f"{path}, line {lineno}"
            if not isinstance(rec.get("steps"), list) or "question" not in rec:
                raise ValueError(f"{where}: not a demonstration record (needs 'question' and a 'steps' list).")
            n_records += 1
            if not rec.get("complete"):
                counts["incomplete_skipped"] += 1  # an interrupted session: no answer to learn from
                continue
            steps, answering = [], []
            for i, step in enumerate(rec["steps"], 1):
                checked = check_step(step, config)
                if isinstance(checked, str):
                    raise ValueError(f"{where}, step {i}: {checked.rstrip('.')}. Demonstrations must contain "
                                     "only accepted commands: fix or delete that episode.")
                if step.get("noise"):
                    # a demonstrated mistake: later steps show it and teach the recovery, but
                    # the mistake itself is no target (DART-style noise injection)
                    counts["noise_steps_skipped"] = counts.get("noise_steps_skipped", 0) + 1
                    continue
                steps.append(checked)
                answering.append(is_answer_step(step))
            if not steps:
                raise ValueError(f"{where}: a complete episode with no steps.")
            source = str(rec.get("source") or "human")
            counts["by_source"][source] = counts["by_source"].get(source, 0) + 1
            episodes.append(Episode(where, source, steps, answering))
        if n_records == 0:
            raise ValueError(f"{path} has no demonstrations (the file is empty).")
    counts["episodes"] = len(episodes)
    if not episodes:
        raise ValueError(f"No complete episodes in {', '.join(paths)} ({counts['incomplete_skipped']} incomplete).")
    return episodes, counts


# --- steps -> token ids --------------------------------------------------------------------------------

def tokenize_step(tokenizer, observation: str, action: str, system_prompt: str, max_observation_tokens: int) -> dict:
    """{"input_ids", "completion_mask"}: the prompt's ids followed by the command's ids and EOS, and
    1 exactly on the command tokens and EOS (the tokens that carry loss)."""
    from citeagent.policies.lm import build_prompt, command_end_token

    prompt = build_prompt(tokenizer, observation, system_prompt, max_observation_tokens)
    prompt_ids = tokenizer(prompt, add_special_tokens=False).input_ids
    completion_ids = tokenizer(action + command_end_token(tokenizer), add_special_tokens=False).input_ids
    return {"input_ids": prompt_ids + completion_ids,
            "completion_mask": [0] * len(prompt_ids) + [1] * len(completion_ids)}


def build_examples(tokenizer, episodes: list[Episode], config: BCConfig) -> tuple[list[dict], int]:
    """(examples, number dropped as longer than max_length)."""
    out, dropped = [], 0
    for ep in episodes:
        for (obs, action), answer in zip(ep.steps, ep.answering):
            ex = tokenize_step(tokenizer, obs, action, config.system_prompt, config.max_observation_tokens)
            if len(ex["input_ids"]) > config.max_length:
                dropped += 1  # cutting it would train on a prompt the policy never sees, or half a command
                continue
            # an episode has one answer among ~10 commands; repeating it keeps the answering phase
            # from being swamped by command-shaped targets
            out.extend([ex] * (config.answer_repeats if answer else 1))
    return out, dropped


def split_episodes(episodes: list[Episode], fraction: float, seed: int) -> tuple[list[Episode], list[Episode]]:
    """(train, heldout) by episode: steps of one episode are near copies of each other, so a split
    by step would measure memorisation."""
    if fraction <= 0 or len(episodes) < 2:
        return list(episodes), []
    order = list(range(len(episodes)))
    random.Random(seed).shuffle(order)
    k = min(len(episodes) - 1, max(1, round(fraction * len(episodes))))
    held = set(order[:k])
    return [e for i, e in enumerate(episodes) if i not in held], [e for i, e in enumerate(episodes) if i in held]


# --- training --------------------------------------------------------------------------------------------

def train_bc(config: BCConfig, model=None, tokenizer=None, log=lambda m: print(m, file=sys.stderr)) -> Path:
    """Train a policy on the demonstrations; save it (LoRA merged) to config.out and return the path.
    model/tokenizer: an already loaded pair (tests) instead of config.model."""
    browser = BrowserConfig(**config.browser)
    episodes, counts = read_demonstrations(config.demos, browser)  # bad data fails here, before any model
    train_eps, val_eps = split_episodes(episodes, config.heldout, config.seed)
    log(f"{counts['episodes']} episodes ({len(train_eps)} train, {len(val_eps)} held out); "
        f"{counts['incomplete_skipped']} incomplete skipped; sources {counts['by_source']}")

    import torch

    if config.threads:
        torch.set_num_threads(config.threads)
    if model is None:
        from citeagent.models import load_policy_model

        model, tokenizer = load_policy_model(config.model)
    elif tokenizer is None:
        raise ValueError("train_bc(model=...) needs the model's tokenizer too")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    train_rows, dropped = build_examples(tokenizer, train_eps, config)
    val_rows, val_dropped = build_examples(tokenizer, val_eps, config)
    if not train_rows:
        shortest = min(len(tokenize_step(tokenizer, o, a, config.system_prompt,
                                         config.max_observation_tokens)["input_ids"])
                       for e in train_eps for o, a in e.steps)
        raise ValueError(f"--max-length {config.max_length} is too small for any example: the shortest is {shortest} "
                         f"tokens. Raise --max-length or lower --max-observation-tokens.")
    if dropped or val_dropped:
        log(f"dropped {dropped + val_dropped} examples longer than {config.max_length} tokens")
    log(f"{len(train_rows)} training examples, {len(val_rows)} validation examples")

    work = tempfile.mkdtemp(prefix="citeagent-bc-")  # the Trainer wants an output dir; nothing is kept there
    try:
        trainer = _trainer(config, model, tokenizer, train_rows, val_rows, work)
        val_before = trainer.evaluate()["eval_loss"] if val_rows else None
        t0 = time.perf_counter()
        result = trainer.train()
        seconds = time.perf_counter() - t0
        val_after = trainer.evaluate() if val_rows else {}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    history = [h for h in trainer.state.log_history if "loss" in h]
    val_accuracy = next((h.get("eval_mean_token_accuracy") for h in reversed(trainer.state.log_history)
                         if "eval_loss" in h), None)

    model = trainer.accelerator.unwrap_model(trainer.model, keep_fp32_wrapper=False)
    if config.lora:
        model = model.merge_and_unload()
    out = Path(config.out)
    _save(model, tokenizer, out, config)
    tokens_seen = sum(len(r["input_ids"]) for r in train_rows) * trainer.state.epoch
    report = {
        "episodes": {"train": len(train_eps), "validation": len(val_eps), **counts},
        "examples": {"train": len(train_rows), "validation": len(val_rows), "dropped_too_long": dropped + val_dropped},
        "steps": trainer.state.global_step,
        "epochs": trainer.state.epoch,
        "train_loss": {"mean": result.training_loss, "first_logged": history[0]["loss"] if history else None,
                       "last_logged": history[-1]["loss"] if history else None},
        "validation_loss": {"before": val_before, "after": val_after.get("eval_loss")},
        "validation_token_accuracy": val_accuracy,
        "seconds": seconds,
        "tokens_per_second": tokens_seen / max(seconds, 1e-9),
        "config": asdict(config),
        "log_history": history,
    }
    (out / REPORT_FILE).write_text(json.dumps(report, indent=2))
    log(f"trained {report['steps']} steps in {seconds:.0f} s ({report['tokens_per_second']:.0f} tokens/s); "
        + (f"validation loss {val_before:.3f} -> {val_after['eval_loss']:.3f}; " if val_rows else "")
        + f"saved to {out}")
    return out


def _trainer(config: BCConfig, model, tokenizer, train_rows: list[dict], val_rows: list[dict], work: str):
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    peft_config = None
    if config.lora:
        from peft import LoraConfig

        present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
        missing = [t for t in config.targets() if t not in present]
        if missing:
            raise ValueError(f"--lora-targets {missing} are not modules of {config.model}; it has e.g. "
                             f"{sorted(n for n in present if n.endswith('proj'))[:10]}")
        peft_config = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                                 target_modules=config.targets(), task_type="CAUSAL_LM",
                                 layers_to_transform=top_layers(model, config.lora_layers))
    args = SFTConfig(
        output_dir=work, per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size, gradient_accumulation_steps=config.grad_accum,
        learning_rate=config.lr, num_train_epochs=config.epochs, max_steps=config.max_steps or -1,
        warmup_steps=config.warmup, weight_decay=config.weight_decay, lr_scheduler_type="linear",
        seed=config.seed, data_seed=config.seed, logging_steps=config.logging_steps, save_strategy="no",
        eval_strategy="no", report_to="none", disable_tqdm=True, dataloader_num_workers=0,
        max_length=config.max_length, completion_only_loss=True, packing=False, prediction_loss_only=True,
        # prompts vary from ~150 to ~450 tokens; batching similar lengths saves most of the padding
        train_sampling_strategy="group_by_length",
        # a 135M model fits easily; recomputing activations would only cost time
        activation_checkpointing=False,
        **device_trainer_args(),
    )
    class BCTrainer(SFTTrainer):
        """SFTTrainer with a loss that runs the LM head only where the loss is: on a CPU the
        49k-way head over every prompt token is most of a step's cost, and only the command's
        tokens carry loss."""

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            nll, n, correct = command_nll(model, inputs["input_ids"], inputs["attention_mask"], inputs["labels"])
            # Like SFTTrainer: divided by the tokens of the whole accumulated batch when the Trainer counts them
            loss = nll / (num_items_in_batch if num_items_in_batch is not None else max(n, 1))
            mode = "train" if model.training else "eval"
            self._metrics[mode]["mean_token_accuracy"].append(correct / max(n, 1))
            return (loss, None) if return_outputs else loss

    model.train()
    return BCTrainer(model=model, args=args, train_dataset=Dataset.from_list(train_rows),
                     eval_dataset=Dataset.from_list(val_rows) if val_rows else None,
                     processing_class=tokenizer, peft_config=peft_config)


def command_nll(model, input_ids, attention_mask, labels):
    """(summed negative log-likelihood of the labelled tokens, their number, how many are the argmax).
    labels: -100 except on the command tokens; position t predicts labels[t + 1]."""
    import torch.nn.functional as F

    lm = model.get_base_model() if hasattr(model, "get_base_model") else model  # a PEFT wrapper: LoRA is inside
    hidden = lm.get_decoder()(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    target = labels[:, 1:]
    keep = target != -100
    logits = lm.get_output_embeddings()(hidden[:, :-1][keep]).float()
    nll = F.cross_entropy(logits, target[keep], reduction="sum")
    correct = int((logits.argmax(-1) == target[keep]).sum())
    return nll, int(keep.sum()), correct


def _save(model, tokenizer, out: Path, config: BCConfig) -> None:
    from citeagent.policies.lm import save_policy_options

    model = model.float().eval()
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.padding_side = "left"  # what LMPolicy decodes with
    tokenizer.save_pretrained(out)
    save_policy_options(out, policy=config.policy_options(), browser=dict(config.browser),
                        extra={"trained_with": "bc", "base_model": config.model})


def run_bc(config: BCConfig) -> int:
    """`citeagent train bc`: train and print the saved model's directory."""
    print(train_bc(config))
    return 0
