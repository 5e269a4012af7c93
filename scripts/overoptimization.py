"""Reward over-optimisation, after Gao et al. (2022): proxy and gold reward against sqrt(KL) for
best-of-n and for PPO, on one chart.

The proxy is the reward model the policy is optimised against; the gold judge is HotpotQA's
answer F1 and supporting-sentence recall (citeagent/reward/gold_judge.py), which the proxy was
trained to imitate. Optimising the proxy harder (larger n, more PPO iterations) raises the proxy
reward; the gold reward rises less, then falls once the policy exploits the proxy's errors.

    python scripts/overoptimization.py --ppo-log runs/ppo/log.jsonl --policy runs/bc \
        --n-max 16 --questions 40 --out docs/overoptimization.png [--reward-model DIR] [--json runs/bon_sweep.json]
    python scripts/overoptimization.py --bon-json runs/bon_sweep.json --ppo-log runs/ppo/log.jsonl --out ...

Best-of-n: n_max episodes are sampled once per HotpotQA *training* question (the held-out ones are
for evaluation) and scored by both rewards. Best-of-k for k < n_max is not sampled again: its
expected reward is computed exactly over all k-subsets of the n_max samples, which is unbiased and
far less noisy than drawing k fresh samples (citeagent/policies/best_of_n.py expected_best_of_k).
Its KL from the policy is kl_bon(k) = log k - (k-1)/k nats.

PPO: log.jsonl lines with iteration, reward (proxy), gold_reward and kl (nats per episode).

The two rewards have different scales, so each line is drawn relative to its own value at KL = 0
(best-of-1, PPO's first logged iteration), as Gao et al. do.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass
class SweepConfig:
    policy: str  # the policy the candidates are sampled from (the one PPO starts from)
    questions: int = 40  # HotpotQA training questions
    n_max: int = 16
    reward_model: str | None = None  # the proxy; default: the one `citeagent train rm` saves
    max_actions: int = 20
    batch_size: int = 8
    temperature: float = 1.0  # for a greedy policy; see best_of_n.sampling
    seed: int = 0
    offset: int = 0  # skip this many training questions (to split one sweep over several processes)
    device: str = "auto"  # the policy's and the proxy's: the first CUDA GPU if there is one, else the CPU
    answers_out: str | None = None  # JSONL of every candidate's full answer: reward-model data (hotpotqa-gold:PATH)


# --- best-of-n ------------------------------------------------------------------------------------

def sample_sweep(config: SweepConfig) -> dict:
    """n_max candidates per question with their proxy and gold scores: everything the best-of-n
    points are computed from, so the chart can be redrawn without sampling again."""
    from citeagent.backend import BackendOptions, make_backend
    from citeagent.policies import make_policy
    from citeagent.policies.best_of_n import best_of_n, load_scorer
    from citeagent.reward.gold_judge import gold_score
    from citeagent.rollout import browser_config
    from citeagent.train import hotpotqa_split
    from citeenv.sources.hotpotqa import read_hotpotqa_records

    records = hotpotqa_split(list(read_hotpotqa_records()))[0][config.offset: config.offset + config.questions]
    if not records:
        raise ValueError("no HotpotQA training questions found; see the shared data README")
    proxy = load_scorer(config.reward_model, device=config.device)
    policy = make_policy(config.policy, device=config.device)
    backend = make_backend(BackendOptions(corpus="hotpotqa"))  # the pooled corpus: every question's paragraphs
    browser = browser_config(policy, max_actions=config.max_actions)
    out = []
    if config.answers_out:
        Path(config.answers_out).parent.mkdir(parents=True, exist_ok=True)
    with open(config.answers_out, "w", encoding="utf-8") if config.answers_out else nullcontext() as answers_file:
        for lo in range(0, len(records), config.batch_size):  # a question at a time would idle the batch
            chunk = records[lo: lo + config.batch_size]
            picked = best_of_n(backend, policy, [r["question"] for r in chunk], config.n_max, proxy,
                               seed=config.seed + lo, batch_size=config.batch_size, config=browser,
                               temperature=config.temperature)
            for rec, b in zip(chunk, picked):
                out.append({"id": rec["_id"], "question": rec["question"], "proxy": b.scores, "answered": b.answered,
                            "gold": [gold_score(c.answer, rec)["score"] for c in b.candidates],
                            "answers": [c.answer.plain_text() if not c.answer.declined else "(declined)"
                                        for c in b.candidates]})
                if answers_file:
                    answers_file.writelines(answer_rows(rec["question"], b.candidates, b.answered))
                    answers_file.flush()
            print(f"sampled {len(out)}/{len(records)} questions", file=sys.stderr)
    return {"config": asdict(config), "questions": out}


def answer_rows(question: str, candidates, answered) -> list[str]:
    """JSONL lines of the answered candidates, in the form `citeagent train rm --data hotpotqa-gold:PATH`
    reads; declines and episodes that ran out of actions carry no answer to compare."""
    return [json.dumps({"question": question, "answer": c.answer.to_dict()}, ensure_ascii=False) + "\n"
            for c, ok in zip(candidates, answered) if ok]


def pool_sweeps(paths: list[str]) -> dict:
    """One sweep from several saved ones; they must agree on what was sampled and how it was scored."""
    same = ("policy", "reward_model", "temperature", "max_actions")
    pooled, seen = None, set()
    for path in paths:
        if not Path(path).is_file():
            raise FileNotFoundError(f"no sweep at {path}; make one with --policy DIR --json {path}")
        sweep = json.loads(Path(path).read_text(encoding="utf-8"))
        if pooled is None:
            pooled = {"config": sweep.get("config", {}), "questions": [], "sources": []}
        diff = [k for k in same if sweep.get("config", {}).get(k) != pooled["config"].get(k)]
        if diff:
            raise ValueError(f"{path} was sampled with a different {', '.join(diff)} than {paths[0]}; "
                             "only sweeps of one setting can be pooled")
        for q in sweep["questions"]:
            key = q.get("id") or q.get("question")
            if key is None or key not in seen:
                seen.add(key)
                pooled["questions"].append(q)
        pooled["sources"].append(str(path))
    return pooled


def sweep_points(sweep: dict) -> list[dict]:
    """Expected proxy and gold reward of best-of-k, k = 1, 2, 4, ... n_max, averaged over questions."""
    from citeagent.eval.bootstrap import paired_bootstrap_ci
    from citeagent.policies.best_of_n import expected_best_of_k, kl_bon

    qs = sweep["questions"]
    if not qs:
        raise ValueError("the best-of-n sweep has no questions")
    n = min(len(q["proxy"]) for q in qs)
    ks = [2 ** i for i in range(int(math.log2(n)) + 1)]
    if ks[-1] != n:
        ks.append(n)
    points, gold_1 = [], None
    for k in ks:
        proxy = [expected_best_of_k(q["proxy"][:n], q["answered"][:n], q["proxy"][:n], k) for q in qs]
        gold = [expected_best_of_k(q["proxy"][:n], q["answered"][:n], q["gold"][:n], k) for q in qs]
        if k == 1:
            gold_1 = gold
        # Whether best-of-k helps the gold reward at all: paired over questions, with a 95% interval.
        gain = paired_bootstrap_ci(gold_1, gold) if k > 1 else None
        points.append({"k": k, "kl": kl_bon(k), "proxy": sum(proxy) / len(qs), "gold": sum(gold) / len(qs),
                       "gold_gain": gain and {key: gain[key] for key in ("mean", "ci_low", "ci_high", "n")}})
    return points


def sweep_stats(sweep: dict) -> dict:
    """How well the proxy tracks the gold judge over all samples, and the ceiling for best-of-n:
    each question's best sample by the gold judge."""
    import numpy as np

    qs = sweep["questions"]
    proxy = [x for q in qs for x in q["proxy"]]
    gold = [x for q in qs for x in q["gold"]]
    corr = float(np.corrcoef(proxy, gold)[0, 1]) if len(set(proxy)) > 1 and len(set(gold)) > 1 else None
    return {"questions": len(qs), "samples": len(proxy), "proxy_gold_correlation": corr,
            "gold_of_gold_judges_pick": sum(max(q["gold"]) for q in qs) / len(qs)}


# --- PPO ------------------------------------------------------------------------------------------

def ppo_points(path: str | Path) -> list[dict]:
    """The PPO log's iterations, in order: proxy reward, gold reward (None where not logged), KL."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no PPO log at {path}; `citeagent train ppo` writes one (log.jsonl in its --out)")
    points = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{lineno}: not JSON ({e.msg})") from None
        if not all(row.get(k) is not None for k in ("iteration", "reward", "kl")):
            continue  # other events (evaluations, checkpoints) share the log
        gold = row.get("gold_reward")
        points.append({"iteration": row["iteration"], "kl": float(row["kl"]), "proxy": float(row["reward"]),
                       "gold": None if gold is None else float(gold)})
    if not points:
        raise ValueError(f"{path} has no lines with iteration, reward and kl")
    return sorted(points, key=lambda p: p["iteration"])


# --- the chart ------------------------------------------------------------------------------------

def relative(points: list[dict]) -> list[dict]:
    """Each point with sqrt(KL) and its rewards minus the first point's (KL = 0)."""
    first = points[0]
    out = []
    for p in points:
        q = dict(p, sqrt_kl=math.sqrt(max(p["kl"], 0.0)))  # a PPO estimate can dip below 0 early on
        for key in ("proxy", "gold"):
            q[f"{key}_rel"] = None if p[key] is None or first[key] is None else p[key] - first[key]
        out.append(q)
    return out


def plot(bon: list[dict] | None, ppo: list[dict] | None, out: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for name, points, color in (("best-of-n", bon, "#4c72b0"), ("PPO", ppo, "#dd8452")):
        if not points:
            continue
        x = [p["sqrt_kl"] for p in points]
        for key, style, label in (("proxy", "--", "proxy (reward model)"), ("gold", "-", "gold (HotpotQA judge)")):
            y = [p[f"{key}_rel"] for p in points]
            if all(v is None for v in y):
                continue
            # A PPO iteration's KL and rewards are means over its few episodes, so they need not move
            # monotonically; its points are drawn unjoined and numbered by iteration.
            ax.plot(x, [math.nan if v is None else v for v in y], linestyle=style if name == "best-of-n" else "none",
                    color=color, marker="o" if key == "gold" else "x", ms=4, label=f"{name}, {label}")
    if bon:
        for p in bon:  # name the n of each best-of-n point
            ax.annotate(f"n={p['k']}", (p["sqrt_kl"], p["proxy_rel"]), fontsize=7, textcoords="offset points", xytext=(2, 4))
    for p in ppo or []:
        if p["proxy_rel"] is not None:
            ax.annotate(str(p["iteration"]), (p["sqrt_kl"], p["proxy_rel"]), fontsize=7, color="#dd8452",
                        textcoords="offset points", xytext=(3, -8))
    ax.axhline(0, color="#999", lw=0.5)
    ax.set_xlabel("sqrt(KL from the initial policy)  [sqrt(nats) per episode]")
    ax.set_ylabel("reward minus its value at KL = 0\n(best-of-1; PPO's first iteration)")
    ax.set_title("Reward over-optimisation: proxy vs gold reward")
    ax.legend(fontsize=8)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> int:
    d = SweepConfig(policy="")
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group()
    src.add_argument("--policy", default=None, help="sample the best-of-n sweep from this policy (e.g. runs/bc)")
    src.add_argument("--bon-json", nargs="+", default=None,
                     help="redraw from sweeps saved earlier with --json, without sampling; several sweeps of the "
                          "same policy, temperature and reward model (e.g. run with different --offset) are pooled")
    p.add_argument("--ppo-log", default=None, help="a PPO run's log.jsonl")
    p.add_argument("--reward-model", default=None, help="the proxy reward model (default: `citeagent train rm`'s)")
    p.add_argument("--n-max", type=int, default=d.n_max)
    p.add_argument("--questions", type=int, default=d.questions, help="HotpotQA training questions to sample")
    p.add_argument("--max-actions", type=int, default=d.max_actions)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--temperature", type=float, default=d.temperature, help="sampling temperature of a greedy policy")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--offset", type=int, default=d.offset, help="skip this many training questions")
    p.add_argument("--device", default=d.device, help="auto (a CUDA GPU if there is one, else the CPU), cpu, cuda[:N]")
    p.add_argument("--answers-out", default=None,
                   help="also write every answered candidate as JSONL, to train a reward model on "
                        "(citeagent train rm --data hotpotqa-gold:PATH)")
    p.add_argument("--json", default="runs/bon_sweep.json", help="where the sampled sweep is saved (default: %(default)s)")
    p.add_argument("--out", default="docs/overoptimization.png")
    args = p.parse_args(argv)
    try:
        if not (args.policy or args.bon_json or args.ppo_log):
            raise ValueError("nothing to plot: give --policy (or --bon-json) for the best-of-n sweep, --ppo-log for "
                             "PPO, or both")
        if args.n_max < 1 or args.questions < 1 or args.offset < 0:
            raise ValueError("--n-max and --questions must be at least 1, --offset at least 0")
        sweep = None
        if args.policy:
            sweep = sample_sweep(SweepConfig(policy=args.policy, questions=args.questions, n_max=args.n_max,
                                             reward_model=args.reward_model, max_actions=args.max_actions,
                                             batch_size=args.batch_size, temperature=args.temperature, seed=args.seed,
                                             offset=args.offset, answers_out=args.answers_out, device=args.device))
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps(sweep, ensure_ascii=False))
            print(f"saved the sweep to {args.json} (redraw with --bon-json {args.json})", file=sys.stderr)
        elif args.bon_json:
            sweep = pool_sweeps(args.bon_json)
        bon = relative(sweep_points(sweep)) if sweep else None
        ppo = relative(ppo_points(args.ppo_log)) if args.ppo_log else None
    except (ValueError, FileNotFoundError) as e:
        print(f"overoptimization: error: {e}", file=sys.stderr)
        return 2
    out = plot(bon, ppo, args.out)
    stats = sweep_stats(sweep) if sweep else None
    print(json.dumps({"out": str(out), "best_of_n": bon, "sweep": stats, "ppo": ppo}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
