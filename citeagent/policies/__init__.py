"""Policies: the retrieval baseline and the LM policy behind one `make_policy` factory."""
from __future__ import annotations


def make_policy(name: str = "baseline", **kw):
    """'baseline' needs no model; 'lm' is the bundled SmolLM2-135M-Instruct; anything else is a
    Hugging Face model name or a local model directory driven by the same LM policy."""
    if not name or not str(name).strip():
        raise ValueError("--policy is empty: use baseline, lm, or a model name/path.")
    if name == "baseline":
        from citeagent.policies.baseline import BaselinePolicy

        return BaselinePolicy()
    from citeagent.policies.lm import LMPolicy

    return LMPolicy(None if name == "lm" else name, **kw)
