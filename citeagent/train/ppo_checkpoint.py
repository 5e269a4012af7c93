"""A PPO run's files: atomic checkpoints that `--resume` continues from (accelerate's state of
every process, plus the trainer state), the log (log.jsonl, log.png) and the final model dir."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from citeenv.jsonl import JsonlRead, iter_jsonl, read_jsonl
from citeagent.train.common import atomic_dir, publish_dir, staging_dir
from citeagent.train.ppo_config import CHECKPOINT, TRAINER_STATE, PPOConfig, find_checkpoint


def checkpoint_iteration(ckpt: Path) -> int:
    return json.loads((ckpt / TRAINER_STATE).read_text())["iteration"]


def use_trainable_weights_only(accelerator) -> None:
    """With LoRA, checkpoints hold the adapters and the value head, not a copy of the frozen base
    (which the --policy dir already has). accelerate still saves the optimizer and RNG states."""
    from safetensors.torch import load_file

    def trainable(model) -> set[str]:
        return {n for n, p in model.named_parameters() if p.requires_grad}

    def on_save(models, weights, output_dir):
        for model, w in zip(models, weights):
            keep = trainable(model)
            for k in [k for k in w if k not in keep]:
                del w[k]

    def on_load(models, input_dir):
        for i, model in enumerate(models):
            f = Path(input_dir) / ("model.safetensors" if i == 0 else f"model_{i}.safetensors")
            saved = load_file(str(f), device=str(next(model.parameters()).device))
            missing = trainable(model) - set(saved)
            unexpected = set(saved) - {n for n, _ in model.named_parameters()}
            if missing or unexpected:
                raise ValueError(f"{input_dir} does not match this model (missing {sorted(missing)[:3]}, unexpected "
                                 f"{sorted(unexpected)[:3]}); was it written with other --lora settings?")
            model.load_state_dict(saved, strict=False)
        models.clear()  # loaded here; accelerate goes on with the optimizer and RNG states

    accelerator.register_save_state_pre_hook(on_save)
    accelerator.register_load_state_pre_hook(on_load)


def save_checkpoint(accelerator, out: Path, state: dict) -> None:
    """Weights, optimizer, RNG states of every process (accelerate) and the trainer state, written
    to a staging dir that replaces <out>/checkpoint only once complete (find_checkpoint also looks
    at the previous one, kept while it is replaced)."""
    ckpt = out / CHECKPOINT
    if accelerator.is_main_process:
        staging_dir(ckpt)
    accelerator.wait_for_everyone()
    tmp = ckpt.with_name(f".{CHECKPOINT}.tmp")
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (tmp / TRAINER_STATE).write_text(json.dumps(state, indent=2))
        publish_dir(tmp, ckpt)
    accelerator.wait_for_everyone()


def load_checkpoint(accelerator, cfg: PPOConfig) -> dict:
    ckpt = find_checkpoint(cfg.out_dir)
    state = json.loads((ckpt / TRAINER_STATE).read_text())
    saved = state.get("config", {})
    for key in ("policy", "lora", "lora_r", "dataset"):
        if key in saved and saved[key] != getattr(cfg, key):
            raise ValueError(f"--{key.replace('_', '-')} {getattr(cfg, key)!r} differs from the checkpoint's "
                             f"{saved[key]!r} in {ckpt}; resume with the same value, or start a new --out.")
    accelerator.load_state(str(ckpt))
    return state


def truncate_log(path: Path, last_iteration: int) -> None:
    """Keep the log lines of iterations up to the checkpoint's: a resumed run redoes the rest, and a
    line torn by a kill is dropped."""
    if not path.exists():
        return
    read = JsonlRead(str(path))
    keep = [rec for _, rec in iter_jsonl(path, bad="skip", read=read)
            if isinstance(rec.get("iteration"), int) and rec["iteration"] <= last_iteration]
    if read.bad_lines:
        print(f"ppo: dropped from the log: {read.describe_bad()}", file=sys.stderr)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(x) + "\n" for x in keep))
    os.replace(tmp, path)


def read_log(path: Path) -> list[dict]:
    return read_jsonl(path).records


def plot_log(log_path: Path, png_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines = read_log(log_path)
    its = [x["iteration"] for x in lines]
    panels = [("reward", ("reward", "gold_reward", "gold_answer_f1")), ("KL (nats/episode)", ("kl",)),
              ("kl_coef", ("kl_coef",)), ("value_loss", ("value_loss",)), ("policy_loss", ("policy_loss",)),
              ("entropy", ("entropy",)), ("clip_frac", ("clip_frac",)), ("approx_kl", ("approx_kl",)),
              ("episode_length", ("episode_length",)), ("rates", ("invalid_rate", "answered_rate")),
              ("tokens", ("tokens",)), ("seconds", ("seconds",))]
    fig, axes = plt.subplots(3, 4, figsize=(16, 9))
    for ax, (title, keys) in zip(axes.flat, panels):
        for k in keys:
            ys = [x.get(k) for x in lines]
            if any(y is not None for y in ys):
                ax.plot(its, [float("nan") if y is None else y for y in ys], marker=".", label=k)
        ax.set_title(title)
        ax.set_xlabel("iteration")
        if len(keys) > 1:
            ax.legend(fontsize=7)
    fig.tight_layout()
    tmp = png_path.with_name(f".{png_path.name}")
    fig.savefig(tmp, dpi=80, format="png")
    plt.close(fig)
    os.replace(tmp, png_path)


def save_final(accelerator, ac, tokenizer, cfg: PPOConfig, options: dict, state: dict) -> Path:
    """<out>/final: a plain Hugging Face model dir (LoRA merged) + tokenizer + the BC dir's policy
    options, so `citeagent eval --policy <out>/final` browses with the layout it was trained in."""
    from citeagent.policies.lm import save_policy_options

    final = cfg.out_dir / "final"
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        lm = accelerator.unwrap_model(ac).lm
        if cfg.lora:
            lm = lm.merge_and_unload()  # the run is over: the adapters can fold into the weights
        extra = {"trained_with": {"method": "ppo", "from": cfg.policy, "reward_model": str(cfg.reward_model_dir()),
                                  "iterations": state["iteration"], "kl_coef": cfg.kl_coef}}
        with atomic_dir(final) as tmp:
            lm.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            save_policy_options(tmp, policy=options.get("policy", {}), browser=options.get("browser", {}),
                                extra=extra)
    accelerator.wait_for_everyone()
    return final
