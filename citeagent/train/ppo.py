"""`citeagent train ppo`: episode-level PPO against the reward model, as WebGPT did.

One iteration, top to bottom (`train`):

1. Rollout. The policy browses `episodes_per_iter` training questions with the batched
   environment (citeagent.rollout.run_episodes), sampling at `temperature`. Each step keeps the
   prompt ids and the command ids the policy wrote.
2. Score. The reward model scores each final answer; a declined or truncated episode gets
   `no_answer_reward`. Where HotpotQA's gold judge exists its score is logged too (never trained
   on; 0 for an episode with no answer): the gap between the two is what reward over-optimisation
   looks like.
3. Forward pass. One row per step = prompt ids + command ids. A full forward pass recomputes, for
   every command token, the policy's log-prob ("old" log-prob), the reference policy's log-prob
   and the value (log-probs at the sampling temperature). The decoder's incremental log-probs are
   not reused: batching and the KV cache change the numbers slightly, and PPO's ratio must start
   at exactly 1. With LoRA on the top layers only (--lora-layers N), the layers below never change
   within an iteration: their output is computed here once per row and kept (the frozen-layer
   cache), and every later pass (reference log-probs, each PPO epoch) runs the top N layers only.
4. Rewards and advantages. The command tokens of all the episode's steps, in order, form one
   trajectory. Each token is rewarded -kl_coef * (logp - ref_logp) (a per-token KL penalty
   against the behaviour-cloned policy) and the episode's last token also gets the reward model's
   score. GAE (gamma 1, lambda 0.95) runs along the trajectory: the last token of a step is
   bootstrapped from the value of the next step's first token, the terminal value is 0.
5. Update. `ppo_epochs` passes over random minibatches of rows: clipped policy loss plus a
   clipped value loss. Observation (prompt) tokens never enter the loss, the KL or the values.
6. Log (log.jsonl, log.png) and checkpoint (every `checkpoint_every` iterations, atomically).

Log-probs for ratios and the KL use the model's unmasked distribution. The decoder samples from
the grammar-masked, renormalised one, so this is the usual approximation; it is exact when the
grammar keeps all the model's mass, and a policy trained to write valid commands nearly does.

The policy is trained with LoRA adapters by default: the reference policy is then the same model
with its adapters disabled, so no second copy is kept. Full fine-tuning (--no-lora) keeps a frozen
copy as the reference. A scalar value head reads the policy's last hidden state.

The same code runs in one process (what the tests run) or under `accelerate launch` on several
GPUs (scripts/accelerate/, docs/training_scale_out.md): every process rolls out its share of the
questions, gradients are averaged by DDP or DeepSpeed ZeRO-2, and the main process writes the logs.
trl 1.16 has no PPO trainer, so the algorithm is written out here in the spirit of CleanRL's ppo.py;
accelerate (devices, gradients, checkpoint state), transformers and peft do the plumbing. Beside
this file: ppo_config.py (the flags), ppo_math.py (GAE, the clipped objective, the KL penalty),
ppo_model.py (policy + value head, reference), ppo_rows.py (rows and the frozen-layer cache) and
ppo_checkpoint.py (checkpoints, the log, the final model).
"""
from __future__ import annotations

import json
import math
import random
import sys
import time
from dataclasses import asdict, fields
from pathlib import Path

import torch

from citeagent.train.ppo_checkpoint import (
    checkpoint_iteration, load_checkpoint, plot_log, save_checkpoint, save_final, truncate_log,
    use_trainable_weights_only,
)
from citeagent.train.ppo_config import PPOConfig, find_checkpoint
from citeagent.train.ppo_math import KLController, gae, kl_penalty_rewards, masked_whiten, ppo_losses
from citeagent.train.ppo_model import ActorCritic, command_token_stats, make_actor_critic, make_optimizer
from citeagent.train.ppo_rows import Rows, bottom_hidden, checked_prefix_layer, frozen_layers

# log.jsonl, one line per iteration. reward: the mean end-of-episode reward (reward model score, or
# no_answer_reward); gold_reward / gold_answer_f1: the gold judge's means (null without one); kl: the
# mean over episodes of the summed per-token logp - ref_logp; losses, entropy, clip_frac, approx_kl:
# means over the update's minibatches; episode_length: actions per episode; invalid_rate: invalid
# actions / actions; epochs: PPO epochs run (fewer than ppo_epochs when stop_approx_kl ended the update);
# tokens: command tokens trained on.
LOG_KEYS = ("iteration", "reward", "gold_reward", "gold_answer_f1", "kl", "kl_coef", "value_loss", "policy_loss",
            "entropy", "clip_frac", "approx_kl", "epochs", "episode_length", "invalid_rate", "answered_rate", "tokens",
            "seconds")


# --- the training loop ----------------------------------------------------------------------------

class NonFiniteLossError(RuntimeError):
    pass


def train(cfg: PPOConfig, *, records: list[dict] | None = None, backend=None, reward_model=None) -> Path:
    """Run PPO; returns the final model dir. records/backend/reward_model replace the defaults (the
    shared HotpotQA records, the pooled HotpotQA corpus, the reward model at cfg.reward_model)."""
    cfg.check(need_reward_model=reward_model is None)
    from accelerate import Accelerator

    accelerator = Accelerator()
    P = accelerator.num_processes
    if cfg.episodes_per_iter % P:
        raise ValueError(f"--episodes-per-iter {cfg.episodes_per_iter} must be a multiple of the number of "
                         f"processes ({P}): each process rolls out the same number of episodes.")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    out = cfg.out_dir
    main = accelerator.is_main_process
    if main:
        out.mkdir(parents=True, exist_ok=True)
    say = (lambda msg: print(f"ppo: {msg}", file=sys.stderr, flush=True)) if main else (lambda msg: None)

    # Data, reward model, policy.
    from citeagent.models import load_policy_model
    from citeagent.reward.gold_judge import gold_score
    from citeagent.rollout import browser_config, run_episodes
    from citeagent.train import hotpotqa_split

    if records is None:
        from citeenv.sources.hotpotqa import read_hotpotqa_records

        records = list(read_hotpotqa_records())
    train_records = hotpotqa_split(records)[0]
    if not train_records:
        raise ValueError("no training questions: the HotpotQA records are all held out")
    has_gold = all("answer" in r and "supporting_facts" in r for r in train_records)
    if backend is None:
        from citeagent.backend import BackendOptions, make_backend

        backend = make_backend(BackendOptions(corpus="hotpotqa"))
    if reward_model is None and cfg.combined_reward:
        from citeagent.safety.combined import load_combined_reward, parse_weights

        weights = parse_weights(cfg.combined_reward)
        weights.support_model = str(cfg.reward_model_dir())
        reward_model = load_combined_reward(weights, device=str(accelerator.device))
    if reward_model is None:
        from citeagent.reward.model import load_reward_model

        reward_model = load_reward_model(cfg.reward_model_dir(), device=str(accelerator.device))

    lm, tokenizer = load_policy_model(cfg.policy, dtype=getattr(torch, cfg.dtype))
    options = policy_options(cfg.policy)
    ac, reference = make_actor_critic(lm, cfg, accelerator.device)
    optimizer = make_optimizer(ac, cfg)
    if accelerator.state.deepspeed_plugin is not None:
        # DeepSpeed wants a micro-batch size even without a dataloader (ours: a minibatch of rows),
        # and clips gradients inside its own step.
        ds = accelerator.state.deepspeed_plugin.deepspeed_config
        ds["train_micro_batch_size_per_gpu"] = cfg.minibatch_size
        ds["gradient_clipping"] = cfg.max_grad_norm
    ac, optimizer = accelerator.prepare(ac, optimizer)
    if cfg.lora:
        use_trainable_weights_only(accelerator)

    state = {"iteration": 0, "cursor": 0, "kl_coef": cfg.kl_coef}
    if cfg.resume:
        state = load_checkpoint(accelerator, cfg)
        for group, lr in zip(optimizer.param_groups, (cfg.learning_rate, cfg.value_lr)):
            group["lr"] = lr  # the command line's, not the checkpoint's: a resumed run may lower it
        say(f"resumed from {find_checkpoint(out)} at iteration {state['iteration']}")
    kl_ctl = KLController(state["kl_coef"], cfg.adaptive_kl, cfg.target_kl, cfg.kl_horizon)
    log_path = out / "log.jsonl"
    if main:
        truncate_log(log_path, state["iteration"])

    model = accelerator.unwrap_model(ac)
    policy = rollout_policy(model.lm, tokenizer, options, cfg, accelerator.device)
    browser = browser_config(policy, max_actions=cfg.max_actions)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    prefix_layer, prefix_checked = frozen_layers(model.lm, cfg), False

    for it in range(state["iteration"] + 1, cfg.iterations + 1):
        t0 = time.perf_counter()
        rank = accelerator.process_index

        # 1. Rollout: this process's share of the iteration's questions.
        picked = question_indices(len(train_records), state["cursor"], cfg.episodes_per_iter, cfg.seed)[rank::P]
        batch_records = [train_records[i] for i in picked]
        policy.reseed(cfg.seed * 1_000_003 + it * 1009 + rank)
        episodes = run_episodes(backend, policy, [r["question"] for r in batch_records], seed=cfg.seed + 1000 * it,
                                batch_size=cfg.rollout_batch_size, config=browser)

        # 2. Score: the reward model on answered episodes, the gold judge for the log.
        answered = [not e.answer.declined and not e.truncated and bool(e.answer.text.strip()) for e in episodes]
        scores = [cfg.no_answer_reward] * len(episodes)
        idx = [i for i, a in enumerate(answered) if a]
        if idx:
            rm_scores = reward_model.score_batch([episodes[i].question for i in idx], [episodes[i].answer for i in idx])
            for i, s in zip(idx, rm_scores):
                scores[i] = float(s)
        golds = [gold_score(e.answer, r) if a else {"score": 0.0, "answer_f1": 0.0}
                 for e, r, a in zip(episodes, batch_records, answered)] if has_gold else None

        # 3. Forward pass: old log-probs, reference log-probs and values of every command token.
        rows = Rows.build([e.generations for e in episodes], pad_id)
        if prefix_layer and not prefix_checked:  # once a run, on real rows
            prefix_layer, prefix_checked = checked_prefix_layer(accelerator, model, rows, prefix_layer, cfg, say), True
        old_logp, old_values, ref_logp = rollout_stats(model, reference, rows, cfg, accelerator.device,
                                                       prefix_layer)

        # 4. Rewards and advantages along each episode's trajectory of command tokens.
        logp_e, mask_e = rows.pad_episodes(old_logp)
        rewards, kl = kl_penalty_rewards(logp_e, rows.pad_episodes(ref_logp)[0], mask_e,
                                         torch.tensor(scores), kl_ctl.value)
        adv, returns = gae(rewards, rows.pad_episodes(old_values)[0], mask_e, cfg.gamma, cfg.lam)
        if cfg.whiten_advantages:
            adv = masked_whiten(adv, mask_e)
        batch = {"old_logp": old_logp, "old_values": old_values, "advantages": adv[mask_e], "returns": returns[mask_e]}

        # 5. Update.
        gen = torch.Generator().manual_seed(cfg.seed * 7_919 + it * 31 + rank)
        losses = ppo_update(accelerator, ac, optimizer, rows, batch, cfg, gen, it)
        epochs_run = losses.pop("epochs")  # the same on every process

        # 6. Log and checkpoint.
        episode_kl = kl.sum(1)
        sums = accelerator.reduce(torch.tensor([
            len(episodes), sum(scores), sum(g["score"] for g in golds) if golds else 0.0,
            sum(g["answer_f1"] for g in golds) if golds else 0.0, float(episode_kl.sum()),
            sum(e.n_actions for e in episodes), sum(e.n_invalid for e in episodes), sum(answered), rows.n_tokens,
            *losses.values()], dtype=torch.float64, device=accelerator.device), "sum").tolist()
        n, reward, gold, f1, kl_sum, actions, invalid, n_answered, tokens = sums[:9]
        loss_means = {k: v / P for k, v in zip(losses, sums[9:])}
        line = {"iteration": it, "reward": reward / n, "gold_reward": gold / n if has_gold else None,
                "gold_answer_f1": f1 / n if has_gold else None, "kl": kl_sum / n, "kl_coef": kl_ctl.value,
                **loss_means, "episode_length": actions / n, "invalid_rate": invalid / max(1.0, actions),
                "answered_rate": n_answered / n, "epochs": epochs_run, "tokens": int(tokens),
                "seconds": time.perf_counter() - t0}
        line = {k: line[k] for k in LOG_KEYS}
        kl_ctl.update(kl_sum / n, int(n))
        state = {"iteration": it, "cursor": state["cursor"] + cfg.episodes_per_iter, "kl_coef": kl_ctl.value}
        if main:
            with log_path.open("a") as f:
                f.write(json.dumps(line) + "\n")
            plot_log(log_path, out / "log.png")
            say(_progress(line, cfg.iterations))
        if it % cfg.checkpoint_every == 0 or it == cfg.iterations:
            save_checkpoint(accelerator, out, state | {"config": asdict(cfg)})

    final = save_final(accelerator, ac, tokenizer, cfg, options, state)
    say(f"done: {final}")
    return final


def policy_options(policy_dir: str) -> dict:
    """The LMPolicyConfig / BrowserConfig overrides the BC model was trained with (the CPU layout for
    a model that has none): PPO browses with them and the final model keeps them."""
    from citeagent.policies.lm import saved_policy_options
    from citeagent.train import CPU_BROWSER, CPU_POLICY

    return saved_policy_options(policy_dir) or {"policy": dict(CPU_POLICY), "browser": dict(CPU_BROWSER)}


def rollout_policy(lm, tokenizer, options: dict, cfg: PPOConfig, device):
    """The sampling LMPolicy over the model being trained (the same object: no copy to refresh).
    top_p is 1: PPO's ratios assume the full distribution."""
    from citeagent.policies.lm import LMPolicy, LMPolicyConfig

    known = {f.name for f in fields(LMPolicyConfig)}
    saved = {k: v for k, v in options.get("policy", {}).items() if k in known}
    policy = LMPolicy(model=lm, tokenizer=tokenizer, **(saved | dict(
        temperature=cfg.temperature, top_p=1.0, batch_size=cfg.rollout_batch_size, device=str(device))))
    policy.browser_overrides = dict(options.get("browser", {}))
    return policy


def question_indices(n: int, cursor: int, count: int, seed: int) -> list[int]:
    """The next `count` training questions from `cursor`: a fresh shuffle of all n per pass over them."""
    out = []
    while len(out) < count:
        epoch, pos = divmod(cursor, n)
        order = list(range(n))
        random.Random(seed * 7_919 + epoch).shuffle(order)
        take = min(count - len(out), n - pos)
        out += order[pos:pos + take]
        cursor += take
    return out


@torch.no_grad()
def rollout_stats(model: ActorCritic, reference, rows: Rows, cfg: PPOConfig, device, prefix_layer: int = 0):
    """Old log-probs, values and reference log-probs of every command token (flat order). Rows go
    through in length order, so a batch carries little padding. prefix_layer > 0: the rows' hidden
    states entering that layer are computed once and cached in `rows` for this and the updates."""
    old_logp, values, ref_logp = (torch.zeros(rows.n_tokens) for _ in range(3))
    order = sorted(range(len(rows)), key=rows.lengths().__getitem__)
    for lo in range(0, len(order), cfg.minibatch_size):
        chunk = order[lo:lo + cfg.minibatch_size]
        ids, attn, cmd, flat = rows.select(chunk, device)
        prefix = None
        if prefix_layer:
            prefix = (prefix_layer, bottom_hidden(model.lm, ids, attn, prefix_layer))
            rows.keep_prefix(chunk, *prefix)
        s = model(ids, attn, cmd, cfg.temperature, with_entropy=False, prefix=prefix)
        old_logp[flat], values[flat] = s.logp.float().cpu(), s.values.float().cpu()
        if reference is None:  # LoRA: the reference is the same model without its adapters
            with model.lm.disable_adapter():
                ref = command_token_stats(model.lm, None, ids, attn, cmd, cfg.temperature, prefix=prefix)
        else:
            ref = command_token_stats(reference, None, ids, attn, cmd, cfg.temperature)
        ref_logp[flat] = ref.logp.float().cpu()
    return old_logp, values, ref_logp


def ppo_update(accelerator, ac, optimizer, rows: Rows, batch: dict, cfg: PPOConfig, gen: torch.Generator,
               iteration: int) -> dict[str, float]:
    """`ppo_epochs` passes over random minibatches of rows; returns the mean loss statistics and the
    number of epochs run. With `stop_approx_kl`, an epoch whose mean approx KL (over every process)
    exceeds it is the last: the policy has already moved far from the one that sampled the rows."""
    device = accelerator.device
    # Every process must make the same number of optimizer steps (each is a collective under DDP),
    # so the count follows the process with the most rows; one with fewer repeats a row at weight 0.
    n_mb = math.ceil(len(rows) / cfg.minibatch_size)
    n_mb = int(accelerator.gather(torch.tensor([n_mb], device=device)).max())
    trainable = [p for p in ac.parameters() if p.requires_grad]
    totals: dict[str, float] = {}
    counted = 0
    for epoch in range(cfg.ppo_epochs):
        epoch_kl, epoch_n = 0.0, 0  # this epoch's sum of minibatch approx KL, and their count
        perm = torch.randperm(len(rows), generator=gen)
        for j, chunk in enumerate(perm.tensor_split(n_mb)):
            weight = 1.0
            if len(chunk) == 0:
                chunk, weight = perm[:1], 0.0
            ids, attn, cmd, flat = rows.select(chunk.tolist(), device)
            s = ac(ids, attn, cmd, cfg.temperature, with_entropy=True, entropy_grad=cfg.ent_coef > 0,
                   prefix=rows.prefix_of(chunk.tolist()))
            on = torch.full((len(flat),), weight > 0, device=device)
            part = {k: v[flat].to(device) for k, v in batch.items()}
            out = ppo_losses(s.logp, part["old_logp"], part["advantages"], s.values, part["old_values"],
                             part["returns"], s.entropy, on, cfg.clip, cfg.vf_clip)
            loss = out["policy_loss"] + cfg.vf_coef * out["value_loss"] - cfg.ent_coef * out["entropy"]
            _stop_unless_finite(accelerator, loss, "the loss", iteration, epoch, j, cfg)
            accelerator.backward(loss)
            norm = accelerator.clip_grad_norm_(trainable, cfg.max_grad_norm)
            if norm is not None:  # DeepSpeed clips inside its step and may not report a norm
                _stop_unless_finite(accelerator, torch.as_tensor(norm), "the gradient norm", iteration, epoch, j, cfg)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if weight > 0:
                counted += 1
                stats = {k: v.item() for k, v in out.items()}
                for k, v in stats.items():
                    totals[k] = totals.get(k, 0.0) + v
                epoch_kl, epoch_n = epoch_kl + stats["approx_kl"], epoch_n + 1
        if cfg.stop_approx_kl is not None:  # every process must take the same decision
            both = torch.tensor([epoch_kl, epoch_n], dtype=torch.float64, device=device)
            kl_sum, n = accelerator.reduce(both, "sum").tolist()
            if n and kl_sum / n > cfg.stop_approx_kl:
                break
    bad = sum(int(not torch.isfinite(p).all()) for p in trainable)
    _stop_unless_finite(accelerator, torch.tensor(float("nan") if bad else 0.0), "a weight", iteration,
                        epoch, n_mb - 1, cfg)
    return {**{k: totals[k] / counted for k in ("value_loss", "policy_loss", "entropy", "clip_frac", "approx_kl")},
            "epochs": epoch + 1}


def _stop_unless_finite(accelerator, value: torch.Tensor, what: str, iteration: int, epoch: int, minibatch: int,
                        cfg: PPOConfig) -> None:
    # All processes must agree to stop, or the others would wait for this one forever.
    flag = torch.tensor([0.0 if torch.isfinite(value).all() else 1.0], device=accelerator.device)
    bad = accelerator.reduce(flag, "sum")
    if float(bad) > 0:
        ckpt = find_checkpoint(cfg.out_dir)
        kept = (f"the last good checkpoint ({ckpt}, iteration {checkpoint_iteration(ckpt)}) is kept"
                if ckpt else "no checkpoint was written yet")
        raise NonFiniteLossError(
            f"PPO stopped at iteration {iteration}: {what} is not finite (epoch {epoch + 1}, "
            f"minibatch {minibatch + 1}); "
            f"nothing of this iteration was saved and {kept}. Check the reward model's scores, lower --lr or "
            "--kl-coef, then continue with --resume.")


def _progress(line: dict, total: int) -> str:
    gold = f" gold {line['gold_reward']:.3f}" if line["gold_reward"] is not None else ""
    return (f"iteration {line['iteration']}/{total}: reward {line['reward']:.3f}{gold} kl {line['kl']:.3f} "
            f"value_loss {line['value_loss']:.4f} clip {line['clip_frac']:.3f} length {line['episode_length']:.1f} "
            f"invalid {line['invalid_rate']:.2f} ({line['seconds']:.0f} s)")


def run_ppo(cfg: PPOConfig) -> int:
    """`citeagent train ppo` (also under `accelerate launch -m citeagent.cli train ppo ...`)."""
    from accelerate import PartialState

    final = train(cfg)
    if PartialState().is_main_process:
        print(final)
    return 0
