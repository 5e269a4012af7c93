"""Reward models trained on human (and gold-judge) comparisons of cited answers
(trained by citeagent/train/rm.py).

    from citeagent.reward import load_reward_model
    rm = load_reward_model()              # $CITEAGENT_HOME/reward/minilm-default
    rm.score(question, answer)            # higher is better
    rm.score_batch(questions, answers)

Heavy imports (torch, transformers) happen only when these names are used.
"""
from __future__ import annotations

from pathlib import Path

__all__ = ["Comparison", "RewardModel", "load_reward_model", "default_reward_model_dir",
           "load_source", "load_sources"]

_WHERE = {
    "Comparison": "citeagent.reward.schema",
    "RewardModel": "citeagent.reward.model",
    "load_reward_model": "citeagent.reward.model",
    "load_source": "citeagent.reward.sources",
    "load_sources": "citeagent.reward.sources",
}


def default_reward_model_dir() -> Path:
    """Where `citeagent train rm` saves the default model and where others load it from."""
    from citeenv.paths import citeagent_home

    return citeagent_home() / "reward" / "minilm-default"


def __getattr__(name: str):
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'citeagent.reward' has no attribute {name!r}")
