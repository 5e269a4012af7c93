"""The over-optimisation chart of the CPU agent's RL (Gao et al. 2022): proxy (reward model) and
gold-judge reward against sqrt(KL to the BC policy), for PPO against the reward model, PPO against
the gold judge, and best-of-n (KL_bon = log n - (n - 1) / n, rewards from the RS rounds' samples).
The gold judge's answer half is answer F1 on HotpotQA and "correct" on generated pydocs questions.

    python scripts/cpu_overoptimization.py --ppo runs/cpu_pipeline/ppo --ppo-gold runs/cpu_pipeline/ppo_gold \
        --rs runs/cpu_pipeline/rs --out docs/cpu_overoptimization.png

Prints the plotted points as JSON.
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path


def read_log(run: str) -> list[dict]:
    path = Path(run) / "log.jsonl"
    if not path.is_file():
        raise SystemExit(f"No PPO log at {path}: run `citeagent train cpu-ppo --out {run}` first.")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ppo", required=True)
    ap.add_argument("--ppo-gold", default=None)
    ap.add_argument("--rs", default=None, help="the rejection-sampling run (its summary.json): best-of-n points")
    ap.add_argument("--out", default="runs/cpu_overoptimization.png")
    args = ap.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_gold, ax_proxy) = plt.subplots(1, 2, figsize=(11, 4))
    points = {}
    for name, run in (("PPO vs reward model", args.ppo), ("PPO vs gold judge", args.ppo_gold)):
        if not run:
            continue
        log = read_log(run)
        settings = sorted({r.get("setting", "") for r in log})
        for setting in settings:  # each iteration draws one setting: a line per setting, not a zigzag
            rows = [r for r in log if r.get("setting", "") == setting]
            label = f"{name} ({setting})" if len(settings) > 1 else name
            style = "o-" if "gold judge" not in name else "^--"
            x = [r["sqrt_kl"] for r in rows]
            ax_gold.plot(x, [r["gold"] for r in rows], style, label=label)
            if "gold judge" not in name:
                ax_proxy.plot(x, [r["reward"] for r in rows], style, label=label)
            points[label] = [{"sqrt_kl": r["sqrt_kl"], "gold": r["gold"], "reward": r["reward"]} for r in rows]
    if args.rs:
        summary = json.loads((Path(args.rs) / "summary.json").read_text())
        n = summary["config"]["n"]
        kl = math.log(n) - (n - 1) / n
        first = summary["history"][0]
        pts = [(0.0, first["sample_gold"]), (math.sqrt(kl), first["kept_gold"])]
        ax_gold.plot([p[0] for p in pts], [p[1] for p in pts], "s--", label=f"best-of-{n} by the reward model (all training settings)")
        points[f"best-of-{n}"] = [{"sqrt_kl": p[0], "gold": p[1]} for p in pts]
    ax_gold.set(xlabel="sqrt KL to BC (nats)", ylabel="gold judge score (0.5 answer + 0.5 sup. recall)", title="gold reward")
    ax_proxy.set(xlabel="sqrt KL to BC (nats)", ylabel="reward model score", title="proxy reward")
    for ax in (ax_gold, ax_proxy):
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(json.dumps({"out": args.out, "points": points}, indent=2))


if __name__ == "__main__":
    main()
