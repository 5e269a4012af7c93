"""PPO's update for the CPU policy against a plain forward+backward of the same batch, and the
rollout rate, printed as JSON (ratios in one process).

    python scripts/bench_cpu_ppo.py [--policy DIR] [--episodes 64] [--repeats 5]

The batch is real: episodes of the policy on HotpotQA training questions (distractor setting).
"plain" is scorer(features).sum() backward over every decision's candidates; "ppo" is what one PPO
minibatch step does: new log-probs, entropy and values (citeagent.train.cpu_ppo.evaluate), the
clipped losses (citeagent.train.ppo_math), backward and the optimiser step.
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--policy", default=None)
    ap.add_argument("--episodes", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()

    import torch

    from citeagent.policies.candidate import N_ANSWER_FEATURES, CandidatePolicy, pad
    from citeagent.train.cpu_bc import _backends, hotpot_training_questions
    from citeagent.train.cpu_ppo import evaluate, to_rows
    from citeagent.train.cpu_rollout import collect_episodes
    from citeagent.train.ppo_math import gae, kl_penalty_rewards, masked_whiten, ppo_losses

    torch.set_num_threads(2)
    policy = CandidatePolicy.load(args.policy, temperature=1.0)
    questions = hotpot_training_questions(args.episodes)
    backend_for = _backends(None, questions, "distractor")
    collect_episodes(policy, questions, backend_for, batch_size=64)  # warm the embedding cache
    t0 = time.perf_counter()
    episodes = [e for e in collect_episodes(policy, questions, backend_for, batch_size=64, seed=1) if e.decisions]
    rollout_s = time.perf_counter() - t0
    steps = [d for e in episodes for d in e.decisions]
    scorer = policy.scorer.train()
    opt = torch.optim.Adam(scorer.parameters(), lr=1e-5)

    def plain():
        browse = [d for d in steps if d.phase != "answer"]
        answer = [d for d in steps if d.phase == "answer"]
        x, _ = pad([d.features for d in browse])
        xa, _ = pad([d.features for d in answer], N_ANSWER_FEATURES)
        loss = scorer(x).sum() + scorer.answer_scores(xa).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()

    with torch.no_grad():
        old, _, old_v = evaluate(scorer, steps, 1.0)
    old, mask = to_rows(episodes, old)
    old_v, _ = to_rows(episodes, old_v)
    rewards, _ = kl_penalty_rewards(old, old, mask, torch.ones(len(episodes)), 0.05)
    adv, ret = gae(rewards, old_v, mask)
    adv = masked_whiten(adv, mask)

    def ppo():
        logp, ent, val = evaluate(scorer, steps, 1.0)
        logp, m = to_rows(episodes, logp)
        ent, _ = to_rows(episodes, ent)
        val, _ = to_rows(episodes, val)
        out = ppo_losses(logp, old, adv, val, old_v, ret, ent, m)
        loss = out["policy_loss"] + 0.5 * out["value_loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()

    def timed(fn):
        fn()
        times = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return statistics.median(times)

    t_plain, t_ppo = timed(plain), timed(ppo)
    print(json.dumps({"episodes": len(episodes), "decisions": len(steps),
                      "rollout_episodes_per_s_warm": round(len(episodes) / rollout_s, 2),
                      "plain_forward_backward_s": round(t_plain, 4), "ppo_update_s": round(t_ppo, 4),
                      "ppo_overhead_ratio": round(t_ppo / t_plain, 3),
                      "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}, indent=2))


if __name__ == "__main__":
    main()
