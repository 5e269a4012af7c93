"""Rejection-sampling fine-tuning of the CPU candidate policy (expert iteration; the cheap RLHF
baseline): sample n episodes per training question, keep the reward model's best, clone its
decisions (browsing and answering), and repeat from the improved policy."""
from __future__ import annotations

import json
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from citeagent.policies.candidate import CandidatePolicy


@dataclass
class CpuRSConfig:
    init: str = "runs/cpu_pipeline/bc"
    reward: str = "rm"  # rm | gold
    reward_model: str = "runs/cpu_pipeline/rm"
    out: str = "runs/cpu_pipeline/rs"
    settings: str = "distractor"  # distractor, pooled, pydocs: every round samples each
    pydocs_questions: str = ""  # the generated pydocs questions (needed by --settings pydocs)
    n: int = 4  # samples per question
    rounds: int = 2
    questions_per_round: int = 400
    temperature: float = 1.0
    epochs: int = 3
    lr: float = 3e-4
    max_actions: int = 12
    hotpot_limit: int = 0
    # where the draws start in the HotpotQA and pydocs training questions' order: past those a BC
    # trained on fewer questions saw (pipeline --demo-questions); 0: the questions BC learnt from
    hotpot_from: int = 0
    pydocs_from: int = 0
    # the extractive reader the policy reads while sampling: "" the init policy's (see cpu-ppo --reader)
    reader: str = ""
    seed: int = 0

    def __post_init__(self):
        if self.n < 2:
            raise ValueError(f"--n {self.n}: rejection sampling needs at least 2 samples per question")
        if self.reward not in ("rm", "gold"):
            raise ValueError(f"--reward {self.reward!r}: use rm or gold")
        if self.hotpot_from < 0 or self.pydocs_from < 0:
            raise ValueError("--hotpot-from and --pydocs-from cannot be negative")
        if self.rounds < 1 or self.epochs < 1 or self.lr <= 0 or self.questions_per_round < 1:
            raise ValueError("--rounds, --epochs, --questions-per-round and --lr must be positive")
        from citeagent.train.cpu_rm import check_reader

        check_reader(self.reader, "--reader")


def fit_decisions(scorer, decisions: list, epochs: int, lr: float, seed: int, temperature: float = 1.0) -> float:
    """Cross-entropy of the chosen candidate of every decision (both phases); returns the last loss."""
    from citeagent.train.cpu_ppo import evaluate

    opt = torch.optim.Adam(scorer.parameters(), lr=lr)
    rng = np.random.default_rng(seed)
    scorer.train()
    loss = torch.tensor(0.0)
    for _ in range(epochs):
        order = rng.permutation(len(decisions))
        for lo in range(0, len(order), 256):
            logp, _, _ = evaluate(scorer, [decisions[i] for i in order[lo: lo + 256]], temperature)
            loss = -logp.mean()
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(scorer.parameters(), 1.0)
            opt.step()
    scorer.eval()
    return float(loss)


def best_of_groups(episodes: list, n: int, reward_model=None) -> list:
    """Episodes come n per question; of each group's answered ones, the one the reward model (the
    gold judge when None) scores highest."""
    if reward_model is not None:
        scores = reward_model.score_batch([e.question["question"] for e in episodes], [e.answer for e in episodes])
    else:
        scores = [e.gold["score"] for e in episodes]
    best = []
    for g in range(0, len(episodes), n):
        group = [(s, e) for s, e in zip(scores[g:g + n], episodes[g:g + n]) if e.answered]
        if group:
            best.append(max(group, key=lambda t: t[0])[1])
    return best


def run(cfg: CpuRSConfig, log=print) -> dict:
    from tqdm import tqdm

    from citeagent.train.cpu_bc import question_pools, setting_answer_form
    from citeagent.train.cpu_rollout import collect_episodes

    if not (Path(cfg.init) / "policy.json").is_file():
        raise ValueError(f"--init {cfg.init}: no CPU policy there. Train one with `citeagent train cpu-bc`.")
    torch.set_num_threads(2)
    torch.manual_seed(cfg.seed)
    policy = CandidatePolicy.load(cfg.init, temperature=cfg.temperature, reader=cfg.reader)
    reward_model = None
    if cfg.reward == "rm":
        from citeagent.train.cpu_rm import AnswerRewardModel

        reward_model = AnswerRewardModel.load(cfg.reward_model, encoder=policy.featurize.encoder)
    pools = question_pools(cfg.settings, cfg.hotpot_limit, cfg.pydocs_questions, seed=cfg.seed,
                           hotpot_from=cfg.hotpot_from, pydocs_from=cfg.pydocs_from)
    rng = random.Random(cfg.seed)
    history, t0 = [], time.time()
    for r in range(cfg.rounds):
        best, sample_gold = [], []
        for setting in sorted(pools):  # every setting each round, questions_per_round of each
            questions, backend_for = pools[setting]
            picked = rng.sample(range(len(questions)), min(cfg.questions_per_round, len(questions)))
            rows = [i for i in picked for _ in range(cfg.n)]
            with tqdm(total=len(rows), desc=f"rejection sampling, round {r + 1}, {setting}", file=sys.stderr) as bar:
                episodes = collect_episodes(policy, [questions[i] for i in rows], lambda k: backend_for(rows[k]),
                                            cfg.max_actions, batch_size=64, seed=rng.randrange(1 << 30), progress=bar,
                                            answer_form=setting_answer_form(setting))
            # keep each setting's best at once: every sample's decisions at the same time would not fit in memory
            best += best_of_groups(episodes, cfg.n, reward_model)
            sample_gold += [e.gold["score"] for e in episodes]
            del episodes
        decisions = [d for e in best for d in e.decisions]
        loss = fit_decisions(policy.scorer, decisions, cfg.epochs, cfg.lr, cfg.seed + r)
        row = {"round": r + 1, "settings": sorted(pools), "episodes": len(sample_gold), "kept": len(best),
               "sample_gold": float(np.mean(sample_gold)),
               "kept_gold": float(np.mean([e.gold["score"] for e in best])) if best else 0.0,
               "kept_answer_f1": float(np.mean([e.gold["answer_f1"] for e in best])) if best else 0.0,
               "loss": loss, "seconds": round(time.time() - t0, 1)}
        history.append(row)
        log(json.dumps(row))
    policy.config.temperature = 0.0
    policy.save(Path(cfg.out) / "policy")
    summary = {"config": asdict(cfg), "history": history, "policy": str(Path(cfg.out) / "policy"),
               "seconds": round(time.time() - t0, 1)}
    Path(cfg.out, "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def main(cfg) -> int:
    """`citeagent train`'s entry: the run's summary as JSON on stdout."""
    print(json.dumps({k: v for k, v in run(cfg).items() if k not in ("history", "config")}, indent=2))
    return 0
