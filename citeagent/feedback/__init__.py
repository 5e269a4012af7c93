"""Human feedback: a web app where annotators compare two cited answers, its queue and database,
and the export that turns judgements into reward-model training data.

Start it with `citeagent label serve`; see docs/human_feedback.md.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

__all__ = ["APP_VERSION", "app_version"]

APP_VERSION = "1.0"


def app_version() -> str:
    """APP_VERSION plus a digest of the templates and stylesheet: a judgement records exactly which
    interface it was made with, even when the pages change between releases."""
    here = Path(__file__).parent
    h = hashlib.sha256()
    for f in sorted([*(here / "templates").glob("*.html"), *(here / "static").glob("*")]):
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return f"{APP_VERSION}+{h.hexdigest()[:8]}"
