"""What every trainer here shares, written once: LoRA on the top decoder layers, the Trainer
arguments for the machine it runs on, and model directories that appear only when complete."""
from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path


def peak_rss_mb() -> float:
    """This process's peak RSS in MB: /proc's VmHWM, which starts at exec (ru_maxrss would carry over
    the process that started this one, e.g. the pipeline running a stage)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmHWM:"))
    except (OSError, StopIteration, ValueError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def top_layers(model, n: int) -> list[int] | None:
    """The indices of the top n decoder layers for LoraConfig(layers_to_transform=...); None for
    n = 0 (every layer). Nothing below the lowest adapted layer needs gradients, so the backward
    pass stops there: the CPU configurations' main saving."""
    n_layers = model.config.num_hidden_layers
    if n > n_layers:
        raise ValueError(f"--lora-layers {n} exceeds the model's {n_layers} layers")
    return list(range(n_layers - n, n_layers)) if n else None


def device_trainer_args() -> dict:
    """transformers.TrainingArguments fields for this machine: the CPU unless there is a GPU, and
    bf16 only on a GPU that has it (TRL turns bf16 on by default; on a CPU bf16 autocast is slower
    than fp32 and coarsens a reward model's scores)."""
    import torch

    gpu = torch.cuda.is_available()
    return {"use_cpu": not gpu, "bf16": gpu and torch.cuda.is_bf16_supported()}


def staging_dir(final: Path) -> Path:
    """An empty directory beside `final` to write it in (see publish_dir)."""
    final = Path(final)
    tmp = final.with_name(f".{final.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def publish_dir(tmp: Path, final: Path) -> None:
    """Put a complete staging dir in the place of `final`. At every moment one complete version sits
    at `final` or at `.<final>.old` beside it, so a run killed while saving loses nothing."""
    final = Path(final)
    old = final.with_name(f".{final.name}.old")
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


@contextmanager
def atomic_dir(final: Path):
    """Yield a staging dir to write `final` in; it replaces `final` only once the block completes."""
    tmp = staging_dir(final)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    publish_dir(tmp, final)
