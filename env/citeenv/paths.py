"""Where things live on disk: the cache home (indexes, converted models) and the shared data."""
from __future__ import annotations

import os
from pathlib import Path

_REPO = Path(__file__).resolve().parents[2]  # the repository: env/citeenv/paths.py


def citeagent_home() -> Path:
    """$CITEAGENT_HOME, else ~/.cache/citeagent. Indexes and converted model weights go here."""
    home = Path(os.environ.get("CITEAGENT_HOME") or Path.home() / ".cache" / "citeagent")
    home.mkdir(parents=True, exist_ok=True)
    return home


def shared_data_dir() -> Path:
    """The real public data sets: $CITEAGENT_DATA, else ../shared/data beside the repository."""
    candidates = [os.environ.get("CITEAGENT_DATA"), _REPO.parent / "shared" / "data", Path.cwd().parent / "shared" / "data"]
    for c in candidates:
        if c and Path(c).is_dir():
            return Path(c)
    raise FileNotFoundError(
        "The shared data folder was not found. Put it at ../shared/data beside the repository, "
        "or set CITEAGENT_DATA to its path."
    )
