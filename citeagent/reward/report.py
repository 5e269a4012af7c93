"""How good a reward model is on held-out comparisons: pairwise accuracy with a bootstrap
interval, calibration of P(answer 0 better), and the distribution of its scores, per source."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from citeagent.reward.schema import Comparison

N_BINS = 10


def evaluate_comparisons(rm, comps: list[Comparison], label_mode: str = "webgpt", n_boot: int = 1000,
                         seed: int = 0, batch_size: int = 32) -> dict:
    """Metrics of one reward model on one set of comparisons.

    Accuracy counts only comparisons with a preferred side (ties have no right answer) and gives
    half credit when the model scores both answers exactly the same. Its interval resamples
    questions, not pairs: several judgements of one question (LFQA's experts, two annotators in the
    app) are not independent evidence. Calibration bins the model's confidence in the side it
    prefers; a calibrated model is right 70% of the time when it is 70% sure."""
    if not comps:
        return {"n": 0}
    questions = [c.question for c in comps for _ in (0, 1)]
    answers = [a for c in comps for a in (c.answer_0, c.answer_1)]
    scores = np.asarray(rm.score_batch(questions, answers, batch_size=batch_size), dtype=float).reshape(-1, 2)
    d = scores[:, 0] - scores[:, 1]
    p = 1.0 / (1.0 + np.exp(-d))
    y = np.asarray([c.label(label_mode) for c in comps], dtype=float)
    decided = y != 0.5
    correct = np.where(d == 0, 0.5, ((d > 0) == (y > 0.5)).astype(float))[decided]
    eps = 1e-7
    pc = np.clip(p, eps, 1 - eps)
    log_loss = float(-np.mean(y * np.log(pc) + (1 - y) * np.log(1 - pc)))

    calib = _calibration(p[decided], y[decided])
    preferred = np.where(y > 0.5, scores[:, 0], scores[:, 1])[decided]
    other = np.where(y > 0.5, scores[:, 1], scores[:, 0])[decided]
    return {
        "n": len(comps),
        "n_decided": int(decided.sum()),
        "n_ties": int((~decided).sum()),
        "accuracy": cluster_bootstrap(correct, [c.split_key() for c, k in zip(comps, decided) if k], n_boot, seed),
        "log_loss": log_loss,
        "calibration": calib,
        "tie_mean_abs_margin": float(np.mean(np.abs(d[~decided]))) if (~decided).any() else None,
        "scores": _distribution(scores.reshape(-1)),
        "preferred_mean": float(preferred.mean()) if preferred.size else None,
        "dispreferred_mean": float(other.mean()) if other.size else None,
    }


def cluster_bootstrap(values: np.ndarray, groups: list[str], n_boot: int = 1000, seed: int = 0,
                      confidence: float = 0.95) -> dict | None:
    """Mean of `values` with a percentile-bootstrap interval that resamples whole groups."""
    if len(values) == 0:
        return None
    index = {g: i for i, g in enumerate(dict.fromkeys(groups))}
    gid = np.asarray([index[g] for g in groups])
    sums = np.bincount(gid, weights=values, minlength=len(index))
    counts = np.bincount(gid, minlength=len(index)).astype(float)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(index), size=(n_boot, len(index)))
    means = sums[picks].sum(axis=1) / counts[picks].sum(axis=1)
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(means, [alpha, 1 - alpha])
    return {"mean": float(np.mean(values)), "ci_low": float(lo), "ci_high": float(hi), "n": int(len(values)),
            "n_questions": len(index)}


def _calibration(p: np.ndarray, y: np.ndarray) -> dict:
    if p.size == 0:
        return {"ece": None, "bins": []}
    conf = np.maximum(p, 1 - p)  # confidence in the side the model prefers
    right = ((p > 0.5) == (y > 0.5)).astype(float)
    edges = np.linspace(0.5, 1.0, N_BINS + 1)
    bins, ece = [], 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (conf >= lo) & ((conf < hi) | (hi == 1.0))
        if not m.any():
            continue
        acc, mean_conf = float(right[m].mean()), float(conf[m].mean())
        ece += m.sum() / conf.size * abs(acc - mean_conf)
        bins.append({"lo": float(lo), "hi": float(hi), "n": int(m.sum()), "confidence": mean_conf, "accuracy": acc})
    return {"ece": float(ece), "bins": bins}


def _distribution(x: np.ndarray) -> dict:
    counts, edges = np.histogram(x, bins=20)
    q = np.quantile(x, [0.05, 0.25, 0.5, 0.75, 0.95])
    return {"mean": float(x.mean()), "std": float(x.std()), "min": float(x.min()), "max": float(x.max()),
            "quantiles": {"p05": float(q[0]), "p25": float(q[1]), "p50": float(q[2]), "p75": float(q[3]), "p95": float(q[4])},
            "histogram": {"counts": counts.tolist(), "edges": [float(e) for e in edges]}}


def evaluate_sources(rm, heldout: dict[str, list[Comparison]], label_mode: str = "webgpt", n_boot: int = 1000,
                     seed: int = 0) -> dict:
    return {name: evaluate_comparisons(rm, comps, label_mode, n_boot, seed) for name, comps in heldout.items()}


def _fmt_acc(acc: dict | None) -> str:
    if not acc:
        return "n/a"
    return f"{acc['mean']:.3f} [{acc['ci_low']:.3f}, {acc['ci_high']:.3f}]"


def markdown_table(results: dict) -> str:
    lines = ["| source | held-out pairs | decided | accuracy [95% CI] | log loss | ECE | score mean ± std |",
             "| --- | ---: | ---: | --- | ---: | ---: | --- |"]
    for name, r in results.items():
        if not r.get("n"):
            lines.append(f"| {name} | 0 | 0 | n/a | | | |")
            continue
        ece = r["calibration"]["ece"]
        lines.append(
            f"| {name} | {r['n']} | {r['n_decided']} | {_fmt_acc(r['accuracy'])} | {r['log_loss']:.3f} | "
            f"{'n/a' if ece is None else f'{ece:.3f}'} | {r['scores']['mean']:.2f} ± {r['scores']['std']:.2f} |"
        )
    return "\n".join(lines)


def write_report(report: dict, out_dir: str | Path) -> Path:
    """report.json (everything), report.md (the table) and two plots, into the model directory."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
    md = [f"# Reward model report: {out_dir.name}", "", f"backbone: `{report.get('backbone')}`  ",
          f"trained on: `{report.get('data')}` ({report.get('train_pairs')} pairs, {report.get('train_seconds', 0):.0f} s)",
          "", "Held-out pairs (questions never seen in training):", "", markdown_table(report["heldout"]), ""]
    (out_dir / "report.md").write_text("\n".join(md))
    _plots(report["heldout"], out_dir)
    return out_dir / "report.md"


def _plots(results: dict, out_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = {k: r for k, r in results.items() if r.get("n")}
    if not shown:
        return
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for name, r in shown.items():
        h = r["scores"]["histogram"]
        centers = [(a + b) / 2 for a, b in zip(h["edges"][:-1], h["edges"][1:])]
        total = max(1, sum(h["counts"]))
        ax1.plot(centers, [c / total for c in h["counts"]], marker=".", label=name)
        bins = r["calibration"]["bins"]
        if bins:
            ax2.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], marker="o", label=name)
    ax1.set_xlabel("reward score")
    ax1.set_ylabel("fraction of answers")
    ax1.set_title("score distribution (held-out)")
    ax1.legend()
    ax2.plot([0.5, 1.0], [0.5, 1.0], "k--", linewidth=0.8)
    ax2.set_xlabel("confidence in preferred side")
    ax2.set_ylabel("accuracy")
    ax2.set_title("calibration (held-out)")
    ax2.set_xlim(0.5, 1.0)
    ax2.set_ylim(0.0, 1.0)
    ax2.legend()
    fig.tight_layout()
    fig.savefig(out_dir / "report.png", dpi=100)
    plt.close(fig)

