"""The small heads the safety models put on top of frozen embeddings: a linear layer or a one-
hidden-layer MLP, saved as safetensors beside a JSON of what it reads (feature kind, encoder,
outputs, held-out results). Kept apart so the preference model and the rule classifier share
one definition of a head and one file format."""
from __future__ import annotations

import json
from pathlib import Path

import torch

WEIGHTS = "head.safetensors"
META = "head.json"
FORMAT_VERSION = 1


def make_head(dim: int, outputs: int = 1, hidden: int = 0) -> torch.nn.Module:
    if hidden:
        return torch.nn.Sequential(torch.nn.Linear(dim, hidden), torch.nn.GELU(), torch.nn.Linear(hidden, outputs))
    return torch.nn.Sequential(torch.nn.Linear(dim, outputs))


def save_head(path: str | Path, head: torch.nn.Module, meta: dict) -> Path:
    """Write the head into `path`, replacing an older one only once the new one is complete; the
    meta gains the file format and when it was trained."""
    import time

    from safetensors.torch import save_file

    from citeagent.train.common import atomic_dir

    with atomic_dir(path) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in head.state_dict().items()}, str(tmp / WEIGHTS))
        (tmp / META).write_text(json.dumps({**meta, "trained_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                               "format": FORMAT_VERSION}, indent=2, ensure_ascii=False))
    return Path(path)


def load_head(path: str | Path, what: str, train_command: str) -> tuple[torch.nn.Module, dict]:
    """(head in eval mode, its meta); a missing or foreign directory is a one-line error saying
    how to make one."""
    from safetensors.torch import load_file

    path = Path(path)
    if not (path / WEIGHTS).is_file() or not (path / META).is_file():
        raise FileNotFoundError(f"No {what} at {path} ({WEIGHTS} and {META} expected). Train one with "
                                f"`{train_command}`.")
    meta = json.loads((path / META).read_text())
    if meta.get("format", FORMAT_VERSION) > FORMAT_VERSION:
        raise ValueError(f"{path} was saved by a newer citeagent (format {meta['format']}); upgrade citeagent.")
    head = make_head(int(meta["dim"]), int(meta.get("outputs", 1)), int(meta.get("hidden", 0)))
    head.load_state_dict(load_file(str(path / WEIGHTS)))
    head.eval()
    return head, meta
