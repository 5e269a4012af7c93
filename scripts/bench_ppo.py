"""Speed of PPO (citeagent/train/ppo.py): the update loop against a plain training step over the same
rows, and rollout episodes per second at batch 1 and 8. Prints JSON.

Rollouts: the same questions (training HotpotQA questions, pooled HotpotQA corpus, temperature 1)
are run once at --rollout batch 1 and once at batch 8; episodes/s is episodes over wall time.

Update: the rows (one per step: prompt + command) of the batch-8 episodes are split into the same
minibatches for every method, and each method makes one optimizer step per minibatch:
- ppo: ppo.ppo_update for one epoch (forward with value head, clipped losses, the non-finite
  checks, gradient clipping, AdamW step);
- plain: the same model, the decoder plus the LM head at the command positions and a mean
  cross-entropy of the command tokens, backward, AdamW step: the same tokens and the same matmuls
  without PPO's bookkeeping. loop_overhead = ppo seconds / plain seconds - 1 (goal: < 0.25);
- plain_full_logits: the textbook step, model(input_ids, labels=...) with logits at every
  position, for reference (PPO computes the 49k-way head only where a command token is predicted).
tokens/s counts every row token (prompt + command, no padding); command tokens are reported too.
The no-grad pass that recomputes old log-probs, values and reference log-probs is timed apart
(`stats_seconds`). Each method runs --repeats times, interleaved; the fastest run is kept.

Frozen-layer cache (with --lora-layers N): the same stats pass and PPO epoch with the bottom layers
run once a row and cached (`ppo_cached`), against the same code without it; the speedups are the
uncached seconds over the cached ones, and `iteration_speedup` applies them to an iteration of
rollout (batch 8) + stats pass + --ppo-epochs epochs.

    python scripts/bench_ppo.py --threads 2 --episodes 8                 # bundled SmolLM2-135M + LoRA
    python scripts/bench_ppo.py --model runs/bc --threads 2
    python scripts/bench_ppo.py --model tiny --episodes 4 --max-actions 3 --lora-layers 1  # checks the script
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from citeagent.train import ppo  # noqa: E402


def load(model: str, dtype: torch.dtype):
    from citeagent.models import load_policy_model, smollm2_dir

    if model != "tiny":
        return load_policy_model(model, dtype=dtype)
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(smollm2_dir())
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                         tie_word_embeddings=True, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    tok.padding_side = "left"
    return LlamaForCausalLM(config).eval(), tok


def rollout(backend, policy, questions, batch_size, browser, seed):
    from citeagent.rollout import run_episodes

    policy.reseed(seed)
    t = time.perf_counter()
    episodes = run_episodes(backend, policy, questions, seed=seed, batch_size=batch_size, config=browser)
    seconds = time.perf_counter() - t
    actions = sum(e.n_actions for e in episodes)
    tokens = sum(len(g.token_ids) for e in episodes for g in e.generations)
    # Sampled episodes differ between the two batch sizes, so actions/s and tokens/s are given too.
    return episodes, {"batch_size": batch_size, "episodes": len(episodes), "seconds": round(seconds, 3),
                      "episodes_per_s": round(len(episodes) / seconds, 4), "actions_per_s": round(actions / seconds, 3),
                      "command_tokens_per_s": round(tokens / seconds, 2),
                      "actions_per_episode": round(actions / len(episodes), 2), "command_tokens": tokens}


def plain_step(ac, optimizer, rows, chunks, device, full_logits: bool):
    for chunk in chunks:
        ids, attn, cmd, _ = rows.select(chunk.tolist(), device)
        if full_logits:
            labels = torch.where(cmd, ids, -100)
            loss = ac.lm(input_ids=ids, attention_mask=attn, labels=labels).loss
        else:
            loss = -ppo.command_token_stats(ac.lm, None, ids, attn, cmd).logp.mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in ac.parameters() if p.requires_grad], 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2", help="smollm2 (bundled), a BC model dir, or tiny (2 layers, a check)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--episodes", type=int, default=8, help="episodes per rollout measurement")
    ap.add_argument("--max-actions", type=int, default=10)
    ap.add_argument("--minibatch-size", type=int, default=8, help="rows per optimizer step")
    ap.add_argument("--lora", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--lora-layers", type=int, default=0, help="LoRA on the top N layers only (0: all)")
    ap.add_argument("--ppo-epochs", type=int, default=2, help="epochs an iteration, for iteration_speedup")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="also write the JSON here")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    from accelerate import Accelerator

    from citeagent.backend import BackendOptions, make_backend
    from citeagent.rollout import browser_config
    from citeagent.train import hotpotqa_split
    from citeenv.sources.hotpotqa import read_hotpotqa_records

    cfg = ppo.PPOConfig(policy=args.model, lora=args.lora, lora_layers=args.lora_layers,
                        minibatch_size=args.minibatch_size, ppo_epochs=1,
                        max_actions=args.max_actions, seed=args.seed)
    accelerator = Accelerator()
    device = accelerator.device
    lm, tokenizer = load(args.model, torch.float32)
    options = ppo.policy_options(args.model) if args.model != "tiny" else ppo.policy_options("smollm2")
    ac, reference = ppo.make_actor_critic(lm, cfg, device)
    optimizer = ppo.make_optimizer(ac, cfg)
    ac, optimizer = accelerator.prepare(ac, optimizer)

    backend = make_backend(BackendOptions(corpus="hotpotqa"))
    questions = [r["question"] for r in hotpotqa_split(list(read_hotpotqa_records()))[0][:args.episodes]]
    policy = ppo.rollout_policy(ac.lm, tokenizer, options, replace(cfg, rollout_batch_size=8), device)
    browser = browser_config(policy, max_actions=cfg.max_actions)
    rollout(backend, policy, questions[:1], 1, browser, args.seed)  # warm-up: caches, first-call costs
    _, r1 = rollout(backend, policy, questions, 1, browser, args.seed)
    episodes, r8 = rollout(backend, policy, questions, 8, browser, args.seed)

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    prefix_layer = ppo.frozen_layers(ac.lm, cfg)

    def stats_pass(layer):
        rows = ppo.Rows.build([e.generations for e in episodes], pad)
        t = time.perf_counter()
        out = ppo.rollout_stats(ac, reference, rows, cfg, device, layer)
        return time.perf_counter() - t, rows, out

    stats_seconds, rows, (old_logp, old_values, ref_logp) = stats_pass(0)
    if prefix_layer:
        cached_seconds, cached_rows, _ = stats_pass(prefix_layer)
        for _ in range(args.repeats - 1):  # interleaved, the fastest kept
            stats_seconds = min(stats_seconds, stats_pass(0)[0])
            cached_seconds = min(cached_seconds, stats_pass(prefix_layer)[0])
    gen = torch.Generator().manual_seed(args.seed)
    scores = torch.randn(len(episodes), generator=gen)  # the update's cost does not depend on the scores
    logp_e, mask = rows.pad_episodes(old_logp)
    rewards, _ = ppo.kl_penalty_rewards(logp_e, rows.pad_episodes(ref_logp)[0], mask, scores, cfg.kl_coef)
    adv, returns = ppo.gae(rewards, rows.pad_episodes(old_values)[0], mask, cfg.gamma, cfg.lam)
    batch = {"old_logp": old_logp, "old_values": old_values, "advantages": ppo.masked_whiten(adv, mask)[mask],
             "returns": returns[mask]}
    n_mb = math.ceil(len(rows) / cfg.minibatch_size)
    chunks = torch.randperm(len(rows), generator=torch.Generator().manual_seed(args.seed)).tensor_split(n_mb)

    def run_ppo(which):
        # ppo_update draws its own permutation; this generator gives it the same split as `chunks`
        ppo.ppo_update(accelerator, ac, optimizer, which, batch, cfg, torch.Generator().manual_seed(args.seed), 1)

    methods = {"ppo": lambda: run_ppo(rows),
               "plain": lambda: plain_step(ac, optimizer, rows, chunks, device, full_logits=False),
               "plain_full_logits": lambda: plain_step(ac, optimizer, rows, chunks, device, full_logits=True)}
    if prefix_layer:
        methods["ppo_cached"] = lambda: run_ppo(cached_rows)
    best = {k: float("inf") for k in methods}
    for k, fn in methods.items():  # warm-up
        fn()
    for _ in range(args.repeats):
        for k, fn in methods.items():
            t = time.perf_counter()
            fn()
            best[k] = min(best[k], time.perf_counter() - t)
    tokens = int(rows.attention_mask.sum())
    update = {"rows": len(rows), "minibatches": n_mb, "tokens": tokens, "command_tokens": rows.n_tokens,
              "stats_seconds": round(stats_seconds, 3)}
    for k, s in best.items():
        update[f"{k}_seconds"] = round(s, 3)
        update[f"{k}_tokens_per_s"] = round(tokens / s, 1)
    update["loop_overhead"] = round(best["ppo"] / best["plain"] - 1, 4)
    update["overhead_vs_full_logits"] = round(best["ppo"] / best["plain_full_logits"] - 1, 4)
    if prefix_layer:
        uncached = r8["seconds"] + stats_seconds + args.ppo_epochs * best["ppo"]
        cached = r8["seconds"] + cached_seconds + args.ppo_epochs * best["ppo_cached"]
        update["frozen_layer_cache"] = {
            "cached_layers": prefix_layer, "stats_seconds": round(stats_seconds, 3),
            "stats_cached_seconds": round(cached_seconds, 3),
            "stats_speedup": round(stats_seconds / cached_seconds, 3),
            "update_speedup": round(best["ppo"] / best["ppo_cached"], 3),
            "ppo_epochs": args.ppo_epochs, "iteration_speedup": round(uncached / cached, 3)}
    result = {
        "model": args.model, "lora": args.lora, "lora_layers": args.lora_layers, "threads": torch.get_num_threads(),
        "device": str(device),
        "machine": platform.processor() or platform.machine(), "max_actions": cfg.max_actions,
        "rollout": {"batch_1": r1, "batch_8": r8,
                    "speedup_8_over_1": round(r8["episodes_per_s"] / r1["episodes_per_s"], 3)},
        "update": update, "goal": {"loop_overhead_below": 0.25, "met": update["loop_overhead"] < 0.25},
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
