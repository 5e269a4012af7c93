"""Evaluation of cited answers: `citeagent eval`.

    from citeagent.eval import EvalConfig, run_eval, load_dataset, score_answer, load_judge
    summary = run_eval(EvalConfig(dataset="hotpotqa", policy="baseline", limit=50))

Modules, one job each:
    datasets          loaders: hotpotqa(-distractor), nq-open, efficientqa, asqa, fever, pydocs, any JSONL
    answer_metrics    SQuAD EM/F1, HotpotQA answer P/R, ALCE STR-EM
    quote_metrics     quotes verbatim in the document they cite; dangling markers
    evidence_metrics  HotpotQA supporting-fact and joint metrics; page-level evidence
    citation_metrics  ALCE citation recall/precision, GopherCite "supported" (with a judge)
    judge             the pluggable support judge (citeagent/train/judge.py trains the offline one)
    scoring           all of the above for one answer
    bootstrap, decline, summary   intervals, decline-to-answer curves, aggregation
    predictions       answers made elsewhere (or an earlier run's records)
    runner            a run: policy or predictions -> records.jsonl, summary.json, report.html
    compare, report, cli
"""
from __future__ import annotations

_EXPORTS = {
    "EvalConfig": "citeagent.eval.runner",
    "run_eval": "citeagent.eval.runner",
    "EvalExample": "citeagent.eval.datasets",
    "load_dataset": "citeagent.eval.datasets",
    "score_answer": "citeagent.eval.scoring",
    "load_judge": "citeagent.eval.judge",
    "compare_runs": "citeagent.eval.compare",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    # Imported on first use: `citeagent --help` should not pay for torch and matplotlib.
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(name)
