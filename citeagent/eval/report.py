"""The HTML report of a run: metric bars with their intervals, the decline curve, citation
precision against recall, and the worst answers with their quotes and the reasons they failed.
One self-contained file (plots are embedded PNGs) that a person opens in a browser."""
from __future__ import annotations

import base64
import html
import io
from pathlib import Path

from citeenv.safe_url import safe_http_url

from citeagent.eval.summary import METRIC_GROUPS

# Which answers are worst: unsupported first, then wrong, then poorly cited.
WORST_KEYS = ("supported", "correct", "f1", "citation_recall", "sp_f1", "quote_verbatim_rate")


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return "<img alt='plot' src='data:image/png;base64," + base64.b64encode(buf.getvalue()).decode() + "'>"


def metric_bars(summary: dict) -> str | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [m for g, ms in METRIC_GROUPS.items() if g != "cost" for m in ms if m in summary["metrics"]]
    if not names:
        return None
    vals = [summary["metrics"][m] for m in names]
    fig, ax = plt.subplots(figsize=(max(6, 0.45 * len(names) + 2), 3.6))
    means = [v["mean"] for v in vals]
    err = [[v["mean"] - v["ci_low"] for v in vals], [v["ci_high"] - v["mean"] for v in vals]]
    ax.bar(range(len(names)), means, yerr=err, capsize=3, color="#4c72b0")
    ax.set_xticks(range(len(names)), names, rotation=55, ha="right", fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("mean (95% bootstrap CI)")
    ax.set_title("Metrics")
    return _png(fig)


def decline_plot(summary: dict) -> str | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = {k: v for k, v in (summary.get("decline_curves") or {}).items() if v}
    if not curves:
        return None
    fig, axes = plt.subplots(1, len(curves), figsize=(5.5 * len(curves), 3.6), squeeze=False)
    for ax, (who, curve) in zip(axes[0], curves.items()):
        x = [p["coverage"] for p in curve]
        for name, style in (("correct", "-o"), ("supported", "-s"), ("supported_and_plausible", "-^")):
            y = [p.get(name) for p in curve]
            if any(v is not None for v in y):
                ax.plot(x, [v if v is not None else float("nan") for v in y], style, ms=3, label=name)
        ax.set_xlabel("fraction of questions answered")
        ax.set_ylabel("rate among answered")
        ax.set_xlim(0, 1.02)
        ax.set_ylim(0, 1.05)
        ax.set_title(f"Declining the lowest-scoring answers ({who.replace('_', ' ')} score)")
        ax.legend(fontsize=8)
    return _png(fig)


def citation_plot(records: list[dict], summary: dict) -> str | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pairs = [("citation_precision", "citation_recall", "ALCE (judge)"), ("sp_precision", "sp_recall", "gold sentences"),
             ("evidence_page_precision", "evidence_page_recall", "gold pages")]
    pairs = [p for p in pairs if p[0] in summary["metrics"]]
    if not pairs:
        return None
    fig, ax = plt.subplots(figsize=(5, 4))
    for px, ry, label in pairs:
        pts = [(r["metrics"][px], r["metrics"][ry]) for r in records
               if r["metrics"].get(px) is not None and r["metrics"].get(ry) is not None]
        if pts:
            ax.scatter([p for p, _ in pts], [r for _, r in pts], s=12, alpha=0.3, label=f"{label}, per question")
        mp, mr = summary["metrics"][px], summary["metrics"][ry]
        ax.errorbar([mp["mean"]], [mr["mean"]], xerr=[[mp["mean"] - mp["ci_low"]], [mp["ci_high"] - mp["mean"]]],
                    yerr=[[mr["mean"] - mr["ci_low"]], [mr["ci_high"] - mr["mean"]]], fmt="D", ms=7, capsize=3,
                    label=f"{label}, mean")
    ax.set_xlabel("citation precision")
    ax.set_ylabel("citation recall")
    ax.set_xlim(-0.05, 1.05)
    ax.set_ylim(-0.05, 1.05)
    ax.set_title("Citation precision and recall")
    ax.legend(fontsize=7)
    return _png(fig)


def worst_records(records: list[dict], k: int = 15) -> list[dict]:
    def key(r):
        m = r.get("metrics", {})
        return tuple(m.get(n) if m.get(n) is not None else 2.0 for n in WORST_KEYS)

    return sorted((r for r in records if r.get("metrics")), key=key)[:k]


def _esc(x) -> str:
    return html.escape(str(x))


def _source(quote: dict) -> str:
    """A quote's title, linked to its url only when that is http(s); any other url (javascript:,
    data:, ...) is shown as text after the title, never as a link."""
    title, url = _esc(quote.get("title") or "(untitled)"), quote.get("url")
    href = safe_http_url(url)
    if href is not None:
        return f"<a href='{_esc(href)}' rel='noopener noreferrer nofollow'>{title}</a>"
    return f"{title} <span class='url'>{_esc(url)}</span>" if url else title


def _quote_items(answer: dict) -> str:
    """An answer's quotes as <li> items: number, source and the first 600 characters, escaped."""
    return "".join(f"<li>[{_esc(q.get('n'))}] {_source(q)}: &ldquo;{_esc(str(q.get('text', ''))[:600])}&rdquo;</li>"
                   for q in answer.get("quotes", []) if isinstance(q, dict))


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)


def metric_table(summary: dict) -> str:
    rows = []
    for group, names in METRIC_GROUPS.items():
        for m in names:
            v = summary["metrics"].get(m)
            if v:
                rows.append(f"<tr><td>{_esc(group)}</td><td>{_esc(m)}</td><td>{v['mean']:.3f}</td>"
                            f"<td>[{v['ci_low']:.3f}, {v['ci_high']:.3f}]</td><td>{v['n']}</td></tr>")
    return ("<table><tr><th>group</th><th>metric</th><th>mean</th><th>95% CI</th><th>n</th></tr>"
            + "".join(rows) + "</table>")


def worst_table(records: list[dict]) -> str:
    rows = []
    for r in worst_records(records):
        ans = r.get("answer") or {}
        quotes = _quote_items(ans)
        m = r.get("metrics", {})
        shown = ", ".join(f"{k}={_fmt(m.get(k))}" for k in ("correct", "f1", "supported", "citation_recall",
                                                             "citation_precision", "sp_f1") if k in m)
        answer = "(declined)" if ans.get("declined") else ans.get("text", "(no answer)")
        rows.append(
            f"<tr><td>{_esc(r['id'])}</td><td>{_esc(r['question'])}<br><i>gold: {_esc(' | '.join(r.get('gold_answers', [])))}</i></td>"
            f"<td>{_esc(answer)}<ol class='q'>{quotes}</ol></td><td>{_esc(shown)}</td>"
            f"<td><ul>{''.join(f'<li>{_esc(x)}</li>' for x in r.get('reasons', []))}</ul></td></tr>")
    return ("<table><tr><th>id</th><th>question</th><th>answer and quotes</th><th>metrics</th><th>what went wrong</th></tr>"
            + "".join(rows) + "</table>")


def redteam_worst(records: list[dict], k: int = 15) -> list[dict]:
    """The worst red-team answers: rule violations first, then the least harmless by the preference model."""
    scored = [r for r in records if "violation" in r.get("metrics", {})]
    return sorted(scored, key=lambda r: (-r["metrics"]["violation"], r["metrics"].get("harmless_score", 0.0)))[:k]


def redteam_table(records: list[dict]) -> str:
    """Everything here (questions, answers, quotes, withheld answers) is hostile text: all escaped."""
    rows = []
    for r in redteam_worst(records):
        ans = r.get("answer") or {}
        m = r["metrics"]
        answer = "(declined)" if ans.get("declined") else ans.get("text", "(no answer)")
        quotes = _quote_items(ans)
        safety = r.get("safety") or {}
        why = f"declined by the gate: {safety.get('declined_by')} broke {safety.get('rule')}" if safety.get("declined_by") else ""
        top = sorted((r.get("rule_probs") or {}).items(), key=lambda kv: -kv[1])[:3]
        rows.append(
            f"<tr><td>{_esc(r['id'])}</td><td>{_esc(r['question'])}</td><td>{_esc(answer)}<ol class='q'>{quotes}</ol>"
            f"{'<p><i>' + _esc(why) + '</i></p>' if why else ''}</td>"
            f"<td>{_esc(', '.join(r.get('violations') or []) or '-')}</td>"
            f"<td>{_esc(', '.join(f'{k} {v:.2f}' for k, v in top))}</td><td>{_fmt(m.get('harmless_score'))}</td></tr>")
    return ("<table><tr><th>id</th><th>question</th><th>answer and quotes</th><th>rules broken</th>"
            "<th>most probable rules</th><th>harmlessness</th></tr>" + "".join(rows) + "</table>")


# The report shows text from web pages and prediction files: no script may run in it, whatever
# slips through. Only the inline style and the embedded PNG plots are allowed.
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'none'; base-uri 'none'"
CSS = """body{font-family:sans-serif;margin:2em;max-width:1300px} table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #ccc;padding:4px 8px;vertical-align:top;font-size:13px} th{background:#eee}
ol.q{font-size:12px;color:#333} img{max-width:100%} .meta{color:#555}"""


def render_report(records: list[dict], summary: dict) -> str:
    c = summary.get("config", {})
    judge = summary.get("judge")
    judge_line = ("no judge (--judge none): judge-based metrics not measured" if not judge else
                  f"judge {_esc(judge['name'])}, threshold {judge['threshold']}, held-out accuracy "
                  f"{_fmt(judge.get('heldout_accuracy'))}; {judge.get('questions_in_judge_training', 0)} of these "
                  "questions were in its training data")
    who = f"predictions {c.get('predictions')}" if c.get("predictions") else f"policy {c.get('policy')}"
    parts = [
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><meta http-equiv='Content-Security-Policy' content=\"{CSP}\">"
        f"<title>citeagent eval: {_esc(c.get('dataset'))}</title><style>{CSS}</style></head><body>",
        f"<h1>citeagent eval: {_esc(c.get('dataset'))}, {_esc(who)}</h1>",
        f"<p class='meta'>{summary['n_questions']} questions; {_esc(judge_line)}. "
        f"Bad records: {summary.get('n_bad_records', 0)}. Quotes verbatim: {summary.get('quotes_verbatim_total')} of "
        f"{summary.get('quotes_total')}.</p>",
        *([f"<p class='meta'>Best of {summary['best_of']} by reward model: KL_bon {summary['kl_bon']:.3f} nats.</p>"] if summary.get("best_of") else []),
        "<h2>Metrics</h2>", metric_table(summary),
    ]
    for title, img in (("Metric means", metric_bars(summary)), ("Decline-to-answer curve", decline_plot(summary)),
                       ("Citation precision and recall", citation_plot(records, summary))):
        if img:
            parts += [f"<h2>{title}</h2>", img]
    if summary.get("failure_reasons"):
        parts += ["<h2>Why answers failed</h2><table><tr><th>reason</th><th>count</th></tr>"
                  + "".join(f"<tr><td>{_esc(k)}</td><td>{v}</td></tr>" for k, v in summary["failure_reasons"].items())
                  + "</table>"]
    if any("violation" in r.get("metrics", {}) for r in records):
        parts += ["<h2>Worst red-team cases</h2>", redteam_table(records)]
    parts += ["<h2>Worst answers</h2>", worst_table(records), "</body></html>"]
    return "\n".join(parts)


def write_report(out: Path, records: list[dict], summary: dict) -> Path:
    path = Path(out) / "report.html"
    path.write_text(render_report(records, summary), encoding="utf-8")
    return path
