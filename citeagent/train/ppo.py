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
accelerate (devices, gradients, checkpoint state), transformers and peft do the plumbing.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import random
import shutil
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn as nn

from citeagent.train.ppo_config import (  # noqa: F401 (re-exported: the config and CLI live there)
    CHECKPOINT, DATASETS, DTYPES, HELP, TRAINER_STATE, PPOConfig, add_ppo_args, add_train_ppo_parser, cmd_train_ppo,
    find_checkpoint,
)

# log.jsonl, one line per iteration. reward: the mean end-of-episode reward (reward model score, or
# no_answer_reward); gold_reward / gold_answer_f1: the gold judge's means (null without one); kl: the
# mean over episodes of the summed per-token logp - ref_logp; losses, entropy, clip_frac, approx_kl:
# means over the update's minibatches; episode_length: actions per episode; invalid_rate: invalid
# actions / actions; epochs: PPO epochs run (fewer than ppo_epochs when stop_approx_kl ended the update);
# tokens: command tokens trained on.
LOG_KEYS = ("iteration", "reward", "gold_reward", "gold_answer_f1", "kl", "kl_coef", "value_loss", "policy_loss",
            "entropy", "clip_frac", "approx_kl", "epochs", "episode_length", "invalid_rate", "answered_rate", "tokens",
            "seconds")


# --- the pure parts, checked by hand in tests/test_train_ppo.py -----------------------------------

def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of x where mask is on. Masked-off entries never count, whatever they hold."""
    mask = mask.bool()
    return torch.where(mask, x, 0.0).sum() / mask.sum().clamp(min=1)


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(x - mean) / std over the masked entries; masked-off entries become 0."""
    mask = mask.bool()
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    return torch.where(mask, (x - mean) * torch.rsqrt(var + eps), 0.0)


def kl_penalty_rewards(logp: torch.Tensor, ref_logp: torch.Tensor, mask: torch.Tensor, score: torch.Tensor,
                       kl_coef: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token rewards of trajectories (rows, tokens): -kl_coef * (logp - ref_logp) on every real
    token, plus each row's score on its last real token. Returns (rewards, per-token KL)."""
    mask = mask.bool()
    kl = torch.where(mask, logp - ref_logp, 0.0)
    rewards = -kl_coef * kl
    positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    last = torch.where(mask, positions, -1).max(1).values  # -1 for a row with no tokens
    has = last >= 0
    rewards[has, last[has]] += score[has].to(rewards.dtype)
    return rewards, kl


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0,
        lam: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimates along each row (Schulman et al. 2016). Masked-off positions
    are skipped, wherever they are: a real token bootstraps from the next real token's value, the
    last one from 0 (the episode ends). Returns (advantages, returns = advantages + values), 0 where
    masked."""
    mask = mask.bool()
    adv = torch.zeros_like(values)
    next_value = torch.zeros_like(values[:, 0])
    running = torch.zeros_like(values[:, 0])
    for t in reversed(range(values.shape[1])):
        on = mask[:, t]
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        a = delta + gamma * lam * running
        adv[:, t] = torch.where(on, a, 0.0)
        next_value = torch.where(on, values[:, t], next_value)
        running = torch.where(on, a, running)
    return adv, torch.where(mask, adv + values, 0.0)


def ppo_losses(logp, old_logp, advantages, values, old_values, returns, entropy, mask,
               clip: float = 0.2, vf_clip: float = 0.2) -> dict[str, torch.Tensor]:
    """PPO's clipped surrogate and clipped value loss over the masked tokens, with diagnostics:
    clip_frac = share of tokens whose ratio left [1 - clip, 1 + clip]; approx_kl = mean of
    (r - 1) - log r, an unbiased estimate of KL(old || new) (Schulman's k3)."""
    log_ratio = logp - old_logp
    ratio = torch.exp(log_ratio)
    pg = torch.max(-advantages * ratio, -advantages * ratio.clamp(1 - clip, 1 + clip))
    v_clipped = old_values + (values - old_values).clamp(-vf_clip, vf_clip)
    vf = 0.5 * torch.max((values - returns) ** 2, (v_clipped - returns) ** 2)
    with torch.no_grad():
        clip_frac = masked_mean(((ratio - 1).abs() > clip).float(), mask)
        approx_kl = masked_mean((ratio - 1) - log_ratio, mask)
    return {"policy_loss": masked_mean(pg, mask), "value_loss": masked_mean(vf, mask),
            "entropy": masked_mean(entropy, mask), "clip_frac": clip_frac, "approx_kl": approx_kl}


class KLController:
    """The KL coefficient: fixed, or adapted towards a target KL per episode (Ziegler et al. 2019):
    beta <- beta * (1 + clip(KL / target - 1, -0.2, 0.2) * n_episodes / horizon)."""

    def __init__(self, value: float, adaptive: bool = False, target: float = 6.0, horizon: int = 10000):
        self.value, self.adaptive, self.target, self.horizon = float(value), adaptive, target, horizon

    def update(self, kl: float, n_episodes: int) -> None:
        if self.adaptive:
            error = min(max(kl / self.target - 1.0, -0.2), 0.2)
            self.value *= 1.0 + error * n_episodes / self.horizon


# --- rows: one per step, prompt ids + command ids ------------------------------------------------

@dataclass
class Rows:
    """Every step of a batch of episodes as one right-padded row of prompt + command ids.

    The command tokens of all rows, read row by row, are the flat token order that every per-token
    tensor (log-probs, values, advantages) uses; rows are grouped by episode in step order, so an
    episode's trajectory is a contiguous run of that order."""
    input_ids: torch.Tensor  # (rows, width)
    attention_mask: torch.Tensor  # (rows, width)
    command_mask: torch.Tensor  # (rows, width) bool: the policy's command tokens
    offsets: list[int]  # row r's tokens are flat[offsets[r]:offsets[r + 1]]
    episode_tokens: list[int]  # command tokens per episode
    # The frozen-layer cache: each row's hidden states entering decoder layer `prefix_layer`, unpadded
    # (right padding leaves a row's real positions the same in any batch). Empty: no cache.
    prefix_layer: int = 0
    prefix: dict[int, torch.Tensor] = field(default_factory=dict)

    @classmethod
    def build(cls, episodes: list[list], pad_id: int) -> "Rows":
        """episodes: per episode, its steps' Generations (prompt_ids, token_ids)."""
        seqs, n_prompt, per_episode = [], [], []
        for gens in episodes:
            if not gens:
                raise ValueError("an episode without generations: PPO needs an LM policy's token ids")
            per_episode.append(sum(len(g.token_ids) for g in gens))
            for g in gens:
                if not g.prompt_ids or not g.token_ids:
                    raise ValueError("a step without prompt or command tokens")
                seqs.append(list(g.prompt_ids) + list(g.token_ids))
                n_prompt.append(len(g.prompt_ids))
        width = max(len(s) for s in seqs)
        input_ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(seqs), width), dtype=torch.long)
        command_mask = torch.zeros((len(seqs), width), dtype=torch.bool)
        offsets = [0]
        for r, (s, p) in enumerate(zip(seqs, n_prompt)):
            input_ids[r, :len(s)] = torch.tensor(s)
            attention_mask[r, :len(s)] = 1
            command_mask[r, p:len(s)] = True
            offsets.append(offsets[-1] + len(s) - p)
        return cls(input_ids, attention_mask, command_mask, offsets, per_episode)

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    @property
    def n_tokens(self) -> int:
        return self.offsets[-1]

    def lengths(self) -> list[int]:
        return self.attention_mask.sum(1).tolist()

    def select(self, rows: list[int], device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(input_ids, attention_mask, command_mask) of some rows, cut to their longest, and the flat
        indices of their command tokens in the order a forward pass returns them."""
        width = int(self.attention_mask[rows].sum(1).max())
        flat = torch.cat([torch.arange(self.offsets[r], self.offsets[r + 1]) for r in rows])
        return (self.input_ids[rows, :width].to(device), self.attention_mask[rows, :width].to(device),
                self.command_mask[rows, :width].to(device), flat)

    def keep_prefix(self, rows: list[int], layer: int, hidden: torch.Tensor) -> None:
        """Cache `hidden` (layer `layer`'s input for the rows in select(rows)'s layout)."""
        self.prefix_layer = layer
        for i, (r, n) in enumerate(zip(rows, self.attention_mask[rows].sum(1).tolist())):
            self.prefix[r] = hidden[i, :n].detach()

    def prefix_of(self, rows: list[int]) -> tuple[int, torch.Tensor] | None:
        """(layer, cached hidden states of the rows, right-padded as select() pads them), or None."""
        if not self.prefix:
            return None
        return self.prefix_layer, nn.utils.rnn.pad_sequence([self.prefix[r] for r in rows], batch_first=True)

    def pad_episodes(self, flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A flat per-token tensor as (episodes, longest trajectory), with its mask."""
        width = max(self.episode_tokens)
        out = torch.zeros((len(self.episode_tokens), width), dtype=flat.dtype)
        mask = torch.zeros((len(self.episode_tokens), width), dtype=torch.bool)
        for e, part in enumerate(flat.split(self.episode_tokens)):
            out[e, :len(part)] = part
            mask[e, :len(part)] = True
        return out, mask


# --- the model: policy LM + value head ------------------------------------------------------------

class TokenStats(NamedTuple):  # a tuple, so that DDP finds the tensors in the forward's output
    logp: torch.Tensor  # (n,) log-prob of each command token
    values: torch.Tensor | None  # (n,) the value of the state before each command token
    entropy: torch.Tensor | None  # (n,) entropy of the distribution the token was drawn from


def command_token_stats(lm, value_head, input_ids, attention_mask, command_mask, temperature: float = 1.0,
                        with_entropy: bool = False, entropy_grad: bool = False,
                        prefix: tuple[int, torch.Tensor] | None = None) -> TokenStats:
    """Forward a batch of rows and return per-token statistics of the command tokens only, in row
    order. The LM head runs only at the positions that predict a command token: with a 49k
    vocabulary, computing logits for every prompt position would cost more than the layers.
    prefix = (layer, hidden states entering that layer) starts the forward there (the frozen-layer
    cache); input_ids still give the targets."""
    if command_mask[:, 0].any():
        raise ValueError("a row starts with a command token: nothing predicts it")
    decoder = lm.get_decoder()
    if prefix is None:
        hidden = decoder(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state
    else:
        layer, h = prefix
        with only_layers(decoder, layer, len(decoder.layers)):
            hidden = decoder(inputs_embeds=h, attention_mask=attention_mask, use_cache=False).last_hidden_state
    predicts = torch.zeros_like(command_mask)
    predicts[:, :-1] = command_mask[:, 1:]  # position p predicts token p + 1
    h = hidden[predicts]  # (n, hidden), row-major: the tokens' flat order
    logits = lm.get_output_embeddings()(h).float() / temperature
    targets = input_ids[command_mask]
    lse = logits.logsumexp(-1)
    logp = logits.gather(1, targets[:, None]).squeeze(1) - lse
    entropy = None
    if with_entropy:
        with torch.set_grad_enabled(entropy_grad and torch.is_grad_enabled()):
            entropy = lse - (torch.softmax(logits, -1) * logits).sum(-1)
    values = None
    if value_head is not None:  # mixed precision may have cast the head: feed it its own dtype
        values = value_head(h.to(value_head.weight.dtype)).float().squeeze(-1)
    return TokenStats(logp, values, entropy)


class ActorCritic(nn.Module):
    """The policy LM (LoRA adapters or all weights trainable) and a value head on its last hidden
    state. One module, so that DDP / DeepSpeed see every trainable weight in one forward call."""

    def __init__(self, lm):
        super().__init__()
        self.lm = lm
        self.value_head = nn.Linear(lm.get_output_embeddings().weight.shape[1], 1)
        nn.init.zeros_(self.value_head.weight)  # V = 0 at first: no made-up baseline
        nn.init.zeros_(self.value_head.bias)

    def forward(self, input_ids, attention_mask, command_mask, temperature=1.0, with_entropy=True, entropy_grad=False,
                prefix=None):
        return command_token_stats(self.lm, self.value_head, input_ids, attention_mask, command_mask, temperature,
                                   with_entropy, entropy_grad, prefix)


# --- the frozen-layer cache -----------------------------------------------------------------------

@contextmanager
def only_layers(decoder, lo: int, hi: int):
    """Make the decoder's forward run its layers [lo, hi) only. Its final norm runs only when the
    top layer does; with lo > 0 the forward takes layer lo's input as `inputs_embeds`. This leans on
    the decoder looping over `self.layers` and adding nothing to `inputs_embeds` (true of Llama and
    Qwen2 in transformers 5); `prefix_cache_error` checks it on real rows before the cache is used."""
    layers, norm = decoder.layers, decoder.norm
    decoder.layers = nn.ModuleList(list(layers)[lo:hi])
    if hi < len(layers):
        decoder.norm = nn.Identity()
    try:
        yield
    finally:
        decoder.layers, decoder.norm = layers, norm


def frozen_layers(lm, cfg: PPOConfig) -> int:
    """How many bottom decoder layers no update can change (LoRA on the top --lora-layers only),
    0 where there are none or the decoder has no `layers`/`norm` to split."""
    decoder = lm.get_decoder()
    if not (cfg.cache_frozen_layers and cfg.lora and cfg.lora_layers) or not (
            isinstance(getattr(decoder, "layers", None), nn.ModuleList) and hasattr(decoder, "norm")):
        return 0
    return len(decoder.layers) - cfg.lora_layers


@torch.no_grad()
def bottom_hidden(lm, input_ids, attention_mask, layer: int) -> torch.Tensor:
    """The hidden states entering decoder layer `layer`."""
    decoder = lm.get_decoder()
    with only_layers(decoder, 0, layer):
        return decoder(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state


@torch.no_grad()
def prefix_cache_error(model: ActorCritic, rows: Rows, layer: int, cfg: PPOConfig, device) -> float:
    """The largest |log-prob difference| between the split forward and the full one on the first
    (shortest) rows: 0 up to rounding for a decoder `only_layers` can split, large for one that
    rescales its input embeddings in its forward (Granite)."""
    chunk = sorted(range(len(rows)), key=rows.lengths().__getitem__)[:cfg.minibatch_size]
    ids, attn, cmd, _ = rows.select(chunk, device)
    full = model(ids, attn, cmd, cfg.temperature, with_entropy=False)
    split = model(ids, attn, cmd, cfg.temperature, with_entropy=False,
                  prefix=(layer, bottom_hidden(model.lm, ids, attn, layer)))
    return float(torch.maximum((full.logp - split.logp).abs().max(), (full.values - split.values).abs().max()))


def checked_prefix_layer(accelerator, model: ActorCritic, rows: Rows, layer: int, cfg: PPOConfig, say) -> int:
    """`layer` if the split forward matches the full one on these rows on every process (so all
    decide alike), else 0: the cache stays off and the run says why."""
    err = float(accelerator.reduce(torch.tensor([prefix_cache_error(model, rows, layer, cfg, accelerator.device)],
                                                device=accelerator.device), "max"))
    if err > 1e-3:
        say(f"frozen-layer cache off: this decoder's split forward differs from its full one by {err:.3g} "
            "(the full forward is used; --no-cache-frozen-layers skips this check)")
        return 0
    say(f"frozen-layer cache: the bottom {layer} layers run once a row an iteration (split vs full forward: {err:.1g})")
    return layer


def make_actor_critic(lm, cfg: PPOConfig, device) -> tuple[ActorCritic, nn.Module | None]:
    """(policy + value head, reference). With LoRA the reference is the policy with its adapters
    off (None here); full fine-tuning keeps a frozen copy of the starting weights."""
    _disable_dropout(lm)
    reference = None
    if cfg.lora:
        from peft import LoraConfig, get_peft_model

        n_layers = lm.config.num_hidden_layers
        if cfg.lora_layers > n_layers:
            raise ValueError(f"--lora-layers {cfg.lora_layers} exceeds the model's {n_layers} layers")
        top = list(range(n_layers - cfg.lora_layers, n_layers)) if cfg.lora_layers else None
        # peft takes a layer range only with explicit module names: every linear layer but the head
        linear = sorted({n.rsplit(".", 1)[-1] for n, m in lm.named_modules()
                         if isinstance(m, nn.Linear) and not n.endswith("lm_head")})
        lm = get_peft_model(lm, LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=0.0,
                                           target_modules=linear if top else "all-linear", layers_to_transform=top))
    else:
        reference = copy.deepcopy(lm).requires_grad_(False).to(device)
    return ActorCritic(lm), reference


def make_optimizer(ac: ActorCritic, cfg: PPOConfig) -> torch.optim.Optimizer:
    policy_params = [p for p in ac.lm.parameters() if p.requires_grad]
    return torch.optim.AdamW([{"params": policy_params, "lr": cfg.learning_rate},
                              {"params": ac.value_head.parameters(), "lr": cfg.value_lr}], eps=1e-5)


def _disable_dropout(model: nn.Module) -> None:
    # PPO's first ratio must be exactly 1: the rollout, the recomputation and the update must all
    # see the same function.
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0


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
        _checkpoint_trainable_weights_only(accelerator)

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
        policy.generator.manual_seed(cfg.seed * 1_000_003 + it * 1009 + rank)
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
        kept = (f"the last good checkpoint ({ckpt}, iteration {_checkpoint_iteration(ckpt)}) is kept"
                if ckpt else "no checkpoint was written yet")
        raise NonFiniteLossError(
            f"PPO stopped at iteration {iteration}: {what} is not finite (epoch {epoch + 1}, "
            f"minibatch {minibatch + 1}); "
            f"nothing of this iteration was saved and {kept}. Check the reward model's scores, lower --lr or "
            "--kl-coef, then continue with --resume.")


# --- checkpoints, logs, the final model -------------------------------------------------------------

def _checkpoint_iteration(ckpt: Path) -> int:
    return json.loads((ckpt / TRAINER_STATE).read_text())["iteration"]


def _checkpoint_trainable_weights_only(accelerator) -> None:
    """With LoRA, checkpoints hold the adapters and the value head, not a copy of the frozen base
    (which the --policy dir already has). accelerate still saves the optimizer and RNG states."""
    from safetensors.torch import load_file

    def trainable(model) -> set[str]:
        return {n for n, p in model.named_parameters() if p.requires_grad}

    def on_save(models, weights, output_dir):
        for model, w in zip(models, weights):
            keep = trainable(model)
            for k in [k for k in w if k not in keep]:
                del w[k]

    def on_load(models, input_dir):
        for i, model in enumerate(models):
            f = Path(input_dir) / ("model.safetensors" if i == 0 else f"model_{i}.safetensors")
            saved = load_file(str(f), device=str(next(model.parameters()).device))
            missing = trainable(model) - set(saved)
            unexpected = set(saved) - {n for n, _ in model.named_parameters()}
            if missing or unexpected:
                raise ValueError(f"{input_dir} does not match this model (missing {sorted(missing)[:3]}, unexpected "
                                 f"{sorted(unexpected)[:3]}); was it written with other --lora settings?")
            model.load_state_dict(saved, strict=False)
        models.clear()  # loaded here; accelerate goes on with the optimizer and RNG states

    accelerator.register_save_state_pre_hook(on_save)
    accelerator.register_load_state_pre_hook(on_load)


def save_checkpoint(accelerator, out: Path, state: dict) -> None:
    """Weights, optimizer, RNG states of every process (accelerate) and the trainer state, written
    to a temporary dir that replaces <out>/checkpoint only once complete."""
    tmp, ckpt, old = out / f".{CHECKPOINT}.tmp", out / CHECKPOINT, out / f".{CHECKPOINT}.old"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (tmp / TRAINER_STATE).write_text(json.dumps(state, indent=2))
        # At every moment one complete checkpoint sits at `ckpt` or `old` (find_checkpoint looks at both).
        if ckpt.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(ckpt, old)
        os.replace(tmp, ckpt)
        shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


def load_checkpoint(accelerator, cfg: PPOConfig) -> dict:
    ckpt = find_checkpoint(cfg.out_dir)
    state = json.loads((ckpt / TRAINER_STATE).read_text())
    saved = state.get("config", {})
    for key in ("policy", "lora", "lora_r", "dataset"):
        if key in saved and saved[key] != getattr(cfg, key):
            raise ValueError(f"--{key.replace('_', '-')} {getattr(cfg, key)!r} differs from the checkpoint's "
                             f"{saved[key]!r} in {ckpt}; resume with the same value, or start a new --out.")
    accelerator.load_state(str(ckpt))
    return state


def truncate_log(path: Path, last_iteration: int) -> None:
    """Keep the log lines of iterations up to the checkpoint's: a resumed run redoes the rest, and a
    line torn by a kill is dropped."""
    if not path.exists():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["iteration"] <= last_iteration:
                keep.append(line)
        except (ValueError, KeyError, TypeError):
            continue
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(x + "\n" for x in keep))
    os.replace(tmp, path)


def read_log(path: Path) -> list[dict]:
    return [json.loads(x) for x in Path(path).read_text().splitlines() if x.strip()]


def plot_log(log_path: Path, png_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines = read_log(log_path)
    its = [x["iteration"] for x in lines]
    panels = [("reward", ("reward", "gold_reward", "gold_answer_f1")), ("KL (nats/episode)", ("kl",)),
              ("kl_coef", ("kl_coef",)), ("value_loss", ("value_loss",)), ("policy_loss", ("policy_loss",)),
              ("entropy", ("entropy",)), ("clip_frac", ("clip_frac",)), ("approx_kl", ("approx_kl",)),
              ("episode_length", ("episode_length",)), ("rates", ("invalid_rate", "answered_rate")),
              ("tokens", ("tokens",)), ("seconds", ("seconds",))]
    fig, axes = plt.subplots(3, 4, figsize=(16, 9))
    for ax, (title, keys) in zip(axes.flat, panels):
        for k in keys:
            ys = [x.get(k) for x in lines]
            if any(y is not None for y in ys):
                ax.plot(its, [float("nan") if y is None else y for y in ys], marker=".", label=k)
        ax.set_title(title)
        ax.set_xlabel("iteration")
        if len(keys) > 1:
            ax.legend(fontsize=7)
    fig.tight_layout()
    tmp = png_path.with_name(f".{png_path.name}")
    fig.savefig(tmp, dpi=80, format="png")
    plt.close(fig)
    os.replace(tmp, png_path)


def save_final(accelerator, ac, tokenizer, cfg: PPOConfig, options: dict, state: dict) -> Path:
    """<out>/final: a plain Hugging Face model dir (LoRA merged) + tokenizer + the BC dir's policy
    options, so `citeagent eval --policy <out>/final` browses with the layout it was trained in."""
    from citeagent.policies.lm import save_policy_options

    final = cfg.out_dir / "final"
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        lm = accelerator.unwrap_model(ac).lm
        if cfg.lora:
            lm = lm.merge_and_unload()  # the run is over: the adapters can fold into the weights
        tmp = cfg.out_dir / ".final.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        lm.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        extra = {"trained_with": {"method": "ppo", "from": cfg.policy, "reward_model": str(cfg.reward_model_dir()),
                                  "iterations": state["iteration"], "kl_coef": cfg.kl_coef}}
        save_policy_options(tmp, policy=options.get("policy", {}), browser=options.get("browser", {}), extra=extra)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
    accelerator.wait_for_everyone()
    return final


def _progress(line: dict, total: int) -> str:
    gold = f" gold {line['gold_reward']:.3f}" if line["gold_reward"] is not None else ""
    return (f"iteration {line['iteration']}/{total}: reward {line['reward']:.3f}{gold} kl {line['kl']:.3f} "
            f"value_loss {line['value_loss']:.4f} clip {line['clip_frac']:.3f} length {line['episode_length']:.1f} "
            f"invalid {line['invalid_rate']:.2f} ({line['seconds']:.0f} s)")


def main(argv: list[str] | None = None) -> int:
    """`python -m citeagent.train.ppo ...` (and `accelerate launch -m citeagent.train.ppo ...`): the same
    flags as `citeagent train ppo`."""
    from citeagent.cli import _expected_errors

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    parser = argparse.ArgumentParser(prog="python -m citeagent.train.ppo", description=__doc__.split("\n")[0])
    add_ppo_args(parser)
    args = parser.parse_args(argv)
    try:
        return cmd_train_ppo(args)
    except _expected_errors() as e:
        if os.environ.get("CITEAGENT_DEBUG") == "1":
            raise
        print(f"citeagent: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
