"""Policies behind one `make_policy` factory: the trained CPU-scale candidate policy (the
default), the retrieval baseline and the LM policy."""
from __future__ import annotations

from pathlib import Path

# The default since its held-out test (docs/RESULTS.md, "sentence answers on pydocs"): better than
# the baseline on HotpotQA, level with it on pydocs.
DEFAULT_POLICY = "cpu"
# How the CPU agent writes its answer (candidate.answer_form_for); "auto" picks by corpus.
ANSWER_FORMS = ("span", "sentence")
ANSWER_FORM_CHOICES = ("auto", *ANSWER_FORMS)


def make_policy(name: str = DEFAULT_POLICY, answer_form: str | None = None, **kw):
    """'cpu' is the shipped candidate-scoring policy (citeagent/artifacts); a directory holding a
    policy.json is another trained candidate policy; 'baseline' needs no model; 'lm' is the
    bundled SmolLM2-135M-Instruct; anything else is a Hugging Face model name or a local model
    directory driven by the LM policy. `answer_form` ("span" or "sentence", see
    candidate.answer_form_for) applies to candidate policies; the others write their own answers."""
    if not name or not str(name).strip():
        raise ValueError("--policy is empty: use cpu, baseline, lm, or a model name/path.")
    if name == "baseline":
        from citeagent.policies.baseline import BaselinePolicy

        return BaselinePolicy()
    if name == "cpu" or (Path(name) / "policy.json").is_file():
        from citeagent.policies.candidate import CandidatePolicy

        return CandidatePolicy.load(None if name == "cpu" else name, **({"answer_form": answer_form} if answer_form else {}))
    from citeagent.policies.lm import LMPolicy

    return LMPolicy(None if name == "lm" else name, **kw)
