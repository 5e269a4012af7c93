"""PPO for the CPU candidate policy (WebGPT's RL stage at CPU scale), top to bottom like CleanRL.

Each decision of an episode is one "token" of PPO: a softmax over the state's valid candidates
(browsing) or over the candidate answers (the last decision), so log-probs are exact.
The reward is the reward model's score of the finished answer (or the gold judge's, the upper
bound), minus kl_coef * (log pi - log pi_BC) at every decision. Advantages, the clipped objective,
the value loss and the KL controller are citeagent.train.ppo_math, the same code as the LM's PPO.

Checkpoints (every iteration, written atomically) hold the weights, the optimiser, the KL
coefficient and every random generator's state, so a killed run resumes exactly where it was.
A non-finite loss stops the run and keeps the last good checkpoint.

With --dev-questions N the last N training questions of each setting are kept out of the draws
and answered greedily every --dev-every iterations (and by the BC policy before the first); the
gold judge's mean score on them picks the iterate saved to OUT/best. That is how a run length or
a KL coefficient is chosen on training questions, never on the held-out ones. Greedy answering
draws no random numbers, so it leaves the training run itself unchanged.

With redteam among --settings, some iterations draw red-team prompts (HH-RLHF's, never the red-team
evaluation's) over the pooled HotpotQA pages, and their episodes are scored by the combined reward
without its support model: --safety-reward's weights of the harmlessness PM and the rule penalty
(citeagent.safety.combined), as Sparrow added its rule and preference models to the reward.
"""
from __future__ import annotations

import copy
import json
import math
import os
import random
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from citeagent.policies.candidate import N_ANSWER_FEATURES, CandidatePolicy, Scorer, masked_log_softmax, pad
from citeagent.train.common import peak_rss_mb
from citeagent.train.ppo_math import KLController, gae, kl_penalty_rewards, masked_whiten, ppo_losses


@dataclass
class CpuPPOConfig:
    init: str = "runs/cpu_pipeline/bc"  # the BC policy: the starting weights and the KL reference
    reward: str = "rm"  # rm: the learned reward model; gold: the gold judge (the upper bound)
    reward_model: str = "runs/cpu_pipeline/rm"
    out: str = "runs/cpu_pipeline/ppo"
    settings: str = "distractor"  # distractor, pooled, pydocs, redteam: each iteration draws one
    pydocs_questions: str = ""  # the generated pydocs questions (needed by --settings pydocs)
    episodes: int = 2048  # in all
    episodes_per_iter: int = 128
    temperature: float = 1.0
    kl_coef: float = 0.05
    adaptive_kl: bool = False
    kl_target: float = 1.0  # nats per episode, with --adaptive-kl
    gamma: float = 1.0
    lam: float = 0.95
    clip: float = 0.2
    vf_clip: float = 1.0
    vf_coef: float = 0.5
    ent_coef: float = 0.0
    update_epochs: int = 4
    minibatch_episodes: int = 32
    lr: float = 3e-4
    max_grad_norm: float = 0.5
    max_actions: int = 12
    hotpot_limit: int = 0
    # where the draws start in the HotpotQA and pydocs training questions' order: past those a BC
    # trained on fewer questions saw (pipeline --demo-questions); 0: the questions BC learnt from
    hotpot_from: int = 0
    pydocs_from: int = 0
    # training questions per setting kept out of PPO's draws for choosing the iterate (OUT/best); 0: none
    dev_questions: int = 0
    dev_every: int = 8  # iterations between the greedy answers to those questions
    # the reward of redteam episodes: the combined reward's harmlessness and rule weights (its
    # support model is left out: a red-team prompt has no helpful answer to reward)
    safety_reward: str = "harmless=1,rule=2"
    # the extractive reader the policy reads during PPO: "" the init policy's, or e.g. a cross-fitted
    # reader (`citeagent train reader --folds K`), so that RL meets readings of its questions as
    # unsure as a new question's; the trained policy keeps it
    reader: str = ""
    seed: int = 0

    def __post_init__(self):
        problems = []
        if self.kl_coef < 0:
            problems.append(f"--kl-coef {self.kl_coef}: the KL coefficient cannot be negative")
        if self.reward not in ("rm", "gold"):
            problems.append(f"--reward {self.reward!r}: use rm (the reward model) or gold (the gold judge)")
        if self.episodes < 1 or self.episodes_per_iter < 1 or self.minibatch_episodes < 1 or self.update_epochs < 1:
            problems.append("--episodes, --episodes-per-iter, --minibatch-episodes and --update-epochs must be positive")
        if self.hotpot_from < 0 or self.pydocs_from < 0:
            problems.append("--hotpot-from and --pydocs-from cannot be negative")
        if self.dev_questions < 0 or self.dev_every < 1:
            problems.append("--dev-questions cannot be negative and --dev-every must be positive")
        if not 0 < self.clip < 1 or self.lr <= 0 or self.temperature <= 0:
            problems.append("--clip must be in (0, 1); --lr and --temperature positive")
        from citeagent.train.cpu_rm import check_reader

        try:
            check_reader(self.reader, "--reader")
        except ValueError as e:
            problems.append(str(e))
        try:
            from citeagent.train.cpu_bc import rl_settings

            rl_settings(self.settings, redteam=True)
        except ValueError as e:
            problems.append(str(e))
        try:
            self.safety_weights()
        except ValueError as e:
            problems.append(str(e))
        if problems:
            raise ValueError("Invalid configuration:\n  " + "\n  ".join(problems))

    def safety_weights(self):
        """The combined reward's config for redteam episodes: support left out."""
        from citeagent.safety.combined import CombinedRewardConfig, parse_weights

        # the support model is the reward of the question-answering settings
        w = parse_weights(self.safety_reward, allowed=("harmless", "rule"), flag="--safety-reward")
        if w.harmless_weight == 0 and w.rule_weight == 0:
            raise ValueError("--safety-reward: give harmless or rule a weight above 0")
        return CombinedRewardConfig(support_weight=0.0, harmless_weight=w.harmless_weight, rule_weight=w.rule_weight)

    def check_files(self) -> None:
        if not (Path(self.init) / "policy.json").is_file():
            raise ValueError(f"--init {self.init}: no CPU policy there. Train one with `citeagent train cpu-bc --out {self.init}`.")
        if self.reward == "rm" and not (Path(self.reward_model) / "rm.json").is_file():
            raise ValueError(f"--reward-model {self.reward_model}: no reward model there. Train one with "
                             "`citeagent train cpu-rm`, or pass --reward gold for the gold judge.")


def evaluate(scorer: Scorer, steps: list, temperature: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """New log-prob, entropy and value of each step's chosen candidate, with gradients."""
    logp, ent, val = torch.zeros(len(steps)), torch.zeros(len(steps)), torch.zeros(len(steps))
    for answer in (False, True):
        rows = [i for i, d in enumerate(steps) if (d.phase == "answer") == answer]
        if not rows:
            continue
        x, mask = pad([steps[i].features for i in rows], N_ANSWER_FEATURES if answer else None)
        scores = scorer.answer_scores(x) if answer else scorer(x)
        lp = masked_log_softmax(scores, mask, temperature)
        idx = torch.tensor([steps[i].index for i in rows])
        p = lp.exp()
        rows_t = torch.tensor(rows)
        logp = logp.index_put((rows_t,), lp.gather(1, idx[:, None]).squeeze(1))
        ent = ent.index_put((rows_t,), -(p * lp.masked_fill(~mask, 0.0)).sum(1))
        val = val.index_put((rows_t,), scorer.value(x, mask, answer=answer))
    return logp, ent, val


def to_rows(episodes, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A flat per-step tensor -> [episodes, longest episode] and its mask."""
    width = max(len(e.decisions) for e in episodes)
    out, mask = torch.zeros(len(episodes), width), torch.zeros(len(episodes), width, dtype=torch.bool)
    k = 0
    for i, e in enumerate(episodes):
        n = len(e.decisions)
        out[i, :n] = values[k:k + n]
        mask[i, :n] = True
        k += n
    return out, mask


@contextmanager
def greedy(policy: CandidatePolicy):
    """The policy acting by argmax for the duration, its sampling temperature restored after."""
    kept, policy.config.temperature = policy.config.temperature, 0.0
    try:
        yield policy
    finally:
        policy.config.temperature = kept


def save_best(policy: CandidatePolicy, out: Path, best: dict, log) -> None:
    with greedy(policy):
        policy.save(out / "best")
    log(f"best iterate so far: {best['iteration']} (dev gold score {best['dev']['score']:.3f}) -> {out / 'best'}")


def save_checkpoint(path: Path, state: dict) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)  # a kill mid-write leaves the last good checkpoint


def dev_scores(policy: CandidatePolicy, pools: dict, n: int, max_actions: int) -> dict:
    """The greedy policy's mean gold-judge score (and answer F1) on the last n questions of each
    setting, and their mean over settings under "score"."""
    from citeagent.train.cpu_bc import setting_answer_form
    from citeagent.train.cpu_rollout import collect_episodes

    policy.scorer.eval()
    out = {}
    pools = {s: p for s, p in pools.items() if s != "redteam"}  # no gold answers to score
    with greedy(policy):
        for setting in sorted(pools):
            questions, backend_for = pools[setting]
            idx = list(range(len(questions) - n, len(questions)))
            eps = collect_episodes(policy, [questions[i] for i in idx], lambda k: backend_for(idx[k]), max_actions,
                                   batch_size=64, seed=0, keep_decisions=False, answer_form=setting_answer_form(setting))
            out[setting] = {"score": float(np.mean([e.gold["score"] for e in eps])),
                            "answer_f1": float(np.mean([e.gold["answer_f1"] for e in eps]))}
    out["score"] = float(np.mean([out[s]["score"] for s in sorted(pools)]))
    return out


def run(cfg: CpuPPOConfig, log=None) -> dict:
    """Load the BC policy, the reward and the training questions, then `train`."""
    cfg.check_files()
    from citeagent.train.cpu_bc import question_pools

    torch.set_num_threads(2)
    policy = CandidatePolicy.load(cfg.init, temperature=cfg.temperature, reader=cfg.reader)
    reward_model = None
    if cfg.reward == "rm":
        from citeagent.train.cpu_rm import AnswerRewardModel

        reward_model = AnswerRewardModel.load(cfg.reward_model, encoder=policy.featurize.encoder)
    pools = question_pools(cfg.settings, cfg.hotpot_limit, cfg.pydocs_questions, seed=cfg.seed,
                           hotpot_from=cfg.hotpot_from, pydocs_from=cfg.pydocs_from, redteam=True)
    safety_reward = None
    if "redteam" in pools:
        from citeagent.safety.combined import load_combined_reward

        safety_reward = load_combined_reward(cfg.safety_weights())
    return train(cfg, policy, pools, reward_model, log, safety_reward)


def train(cfg: CpuPPOConfig, policy: CandidatePolicy, pools: dict, reward_model=None, log=None,
          safety_reward=None) -> dict:
    """The PPO loop. pools: setting name -> (questions, question index -> Backend); reward_model:
    None for the gold judge, else anything with score_batch(questions, answers); safety_reward:
    the same for the redteam setting's episodes (needed when pools has one)."""
    from tqdm import tqdm

    from citeagent.train.cpu_bc import setting_answer_form
    from citeagent.train.cpu_rollout import collect_episodes

    log = log or (lambda message: print(message, file=sys.stderr))  # stdout is the summary's
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    ref = copy.deepcopy(policy.scorer).eval().requires_grad_(False)
    scorer = policy.scorer
    opt = torch.optim.Adam(scorer.parameters(), lr=cfg.lr, eps=1e-5)
    kl_ctl = KLController(cfg.kl_coef, adaptive=cfg.adaptive_kl, target=cfg.kl_target)
    rng = random.Random(cfg.seed)
    torch.manual_seed(cfg.seed)
    n_iters = math.ceil(cfg.episodes / cfg.episodes_per_iter)
    start, ckpt = 0, out / "checkpoint.pt"
    if ckpt.is_file():  # resume exactly: weights, optimiser, KL coefficient, every generator
        state = torch.load(ckpt, weights_only=False)
        scorer.load_state_dict(state["scorer"])
        opt.load_state_dict(state["optimizer"])
        kl_ctl.value = state["kl_coef"]
        rng.setstate(state["rng"])
        torch.set_rng_state(state["torch_rng"])
        policy.generator.set_state(state["policy_rng"])
        start = state["iteration"]
        log(f"resuming {out} at iteration {start + 1} of {n_iters}")
    log_path = out / "log.jsonl"
    if "redteam" in pools and safety_reward is None:
        raise ValueError("the redteam setting needs a safety reward (the harmlessness PM and the rule classifier)")
    kept_out = {s: 0 if s == "redteam" else cfg.dev_questions for s in pools}
    for setting, (questions, _) in pools.items():
        if kept_out[setting] and len(questions) <= kept_out[setting]:
            raise ValueError(f"--dev-questions {cfg.dev_questions}: the {setting} setting has only {len(questions)} "
                             "training questions; keep fewer out.")
    n_draw = {s: len(q) - kept_out[s] for s, (q, _) in pools.items()}
    best = state.get("best") if start else None
    if cfg.dev_questions and start == 0:  # the BC policy is the first candidate iterate
        best = {"iteration": 0, "dev": dev_scores(policy, pools, cfg.dev_questions, cfg.max_actions)}
        save_best(policy, out, best, log)
    t_start = time.time()
    for it in tqdm(range(start, n_iters), desc="ppo", file=sys.stderr, initial=start, total=n_iters):
        t0 = time.time()
        # ---- rollout: a batch of training questions, each in one of the settings
        setting = rng.choice(sorted(pools))
        questions, backend_for = pools[setting]
        idx = [rng.randrange(n_draw[setting]) for _ in range(cfg.episodes_per_iter)]
        batch = [questions[i] for i in idx]
        scorer.eval()
        episodes = collect_episodes(policy, batch, lambda i: backend_for(idx[i]), cfg.max_actions,
                                    batch_size=64, seed=rng.randrange(1 << 30), answer_form=setting_answer_form(setting))
        episodes = [e for e in episodes if e.decisions]
        judge = safety_reward if setting == "redteam" else reward_model
        if judge is not None:
            scores = torch.tensor(judge.score_batch([e.question["question"] for e in episodes],
                                                  [e.answer for e in episodes]), dtype=torch.float32)
        else:
            scores = torch.tensor([e.gold["score"] for e in episodes], dtype=torch.float32)
        gold = torch.tensor([e.gold["score"] for e in episodes])
        steps = [d for e in episodes for d in e.decisions]
        t_roll = time.time() - t0
        # ---- advantages: per-decision KL penalty to the BC policy, GAE over each episode
        with torch.no_grad():
            old_logp, _, old_values = evaluate(scorer, steps, cfg.temperature)
            ref_logp, _, _ = evaluate(ref, steps, cfg.temperature)
        old_logp, mask = to_rows(episodes, old_logp)
        ref_logp, _ = to_rows(episodes, ref_logp)
        old_values, _ = to_rows(episodes, old_values)
        rewards, kl = kl_penalty_rewards(old_logp, ref_logp, mask, scores, kl_ctl.value)
        advantages, returns = gae(rewards, old_values, mask, cfg.gamma, cfg.lam)
        advantages = masked_whiten(advantages, mask)
        # ---- update: several epochs of minibatches of whole episodes
        scorer.train()
        t1 = time.time()
        stats = []
        for _ in range(cfg.update_epochs):
            order = torch.randperm(len(episodes)).tolist()
            for lo in range(0, len(order), cfg.minibatch_episodes):
                rows = order[lo: lo + cfg.minibatch_episodes]
                mb = [episodes[i] for i in rows]
                new_logp, entropy, values = evaluate(scorer, [d for e in mb for d in e.decisions], cfg.temperature)
                new_logp, m = to_rows(mb, new_logp)
                entropy, _ = to_rows(mb, entropy)
                values, _ = to_rows(mb, values)
                w = m.shape[1]
                losses = ppo_losses(new_logp, old_logp[rows, :w], advantages[rows, :w], values, old_values[rows, :w],
                                    returns[rows, :w], entropy, m, cfg.clip, cfg.vf_clip)
                loss = losses["policy_loss"] + cfg.vf_coef * losses["value_loss"] - cfg.ent_coef * losses["entropy"]
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"PPO iteration {it + 1}: the loss is {float(loss.detach())}; stopped. The last good checkpoint "
                        f"({ckpt if ckpt.is_file() else 'none yet'}) is kept; lower --lr or raise --kl-coef and resume.")
                opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(scorer.parameters(), cfg.max_grad_norm)
                opt.step()
                stats.append({k: float(v.detach()) for k, v in losses.items()})
        kl_episode = float(kl.sum(1).mean())
        kl_ctl.update(kl_episode, len(episodes))
        row = {"iteration": it + 1, "episodes": (it + 1) * cfg.episodes_per_iter, "setting": setting,
               "reward": float(scores.mean()), "gold": float(gold.mean()),
               "answer_f1": float(np.mean([e.gold["answer_f1"] for e in episodes])),
               "sp_recall": float(np.mean([e.gold["sp_recall"] for e in episodes])),
               "declined": float(np.mean([bool(e.answer and e.answer.declined) for e in episodes])),
               "kl": kl_episode, "sqrt_kl": math.sqrt(max(kl_episode, 0.0)), "kl_coef": kl_ctl.value,
               "steps_per_episode": len(steps) / len(episodes),
               **{k: float(np.mean([s[k] for s in stats])) for k in stats[0]},
               "seconds_rollout": round(t_roll, 2), "seconds_update": round(time.time() - t1, 2),
               # memory so far, and the texts whose vectors this process keeps (the 4 GB goal)
               "peak_rss_mb": int(peak_rss_mb()),
               "embedded_texts": len(policy.featurize.cache)}
        if cfg.dev_questions and ((it + 1) % cfg.dev_every == 0 or it + 1 == n_iters):
            row["dev"] = dev_scores(policy, pools, cfg.dev_questions, cfg.max_actions)
            if row["dev"]["score"] > best["dev"]["score"]:
                best = {"iteration": it + 1, "dev": row["dev"]}
                save_best(policy, out, best, log)
        with open(log_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
        save_checkpoint(ckpt, {"scorer": scorer.state_dict(), "optimizer": opt.state_dict(), "kl_coef": kl_ctl.value,
                               "rng": rng.getstate(), "torch_rng": torch.get_rng_state(),
                               "policy_rng": policy.generator.get_state(), "iteration": it + 1, "config": asdict(cfg),
                               "best": best})
    policy.config.temperature = 0.0
    policy.save(out / "policy")
    summary = {"config": asdict(cfg), "iterations": n_iters, "seconds": round(time.time() - t_start, 1),
               "log": str(log_path), "policy": str(out / "policy")}
    if best is not None:
        summary["best"] = {**best, "policy": str(out / "best")}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def main(cfg) -> int:
    """`citeagent train`'s entry: the run's summary as JSON on stdout."""
    print(json.dumps({k: v for k, v in run(cfg).items() if k not in ("history", "config")}, indent=2))
    return 0
