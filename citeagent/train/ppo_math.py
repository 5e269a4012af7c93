"""PPO's arithmetic over per-token tensors, shared by every PPO trainer here (the LM policy's in
ppo.py; a candidate-scoring policy's may import the same). Pure functions of tensors, checked
by hand in tests/test_train_ppo.py.

    rewards, kl = kl_penalty_rewards(logp, ref_logp, mask, scores, kl_coef)   # (episodes, tokens)
    adv, returns = gae(rewards, values, mask, gamma, lam)
    adv = masked_whiten(adv, mask)
    out = ppo_losses(new_logp, old_logp, adv, new_values, old_values, returns, entropy, mask, clip, vf_clip)
    loss = out["policy_loss"] + vf_coef * out["value_loss"] - ent_coef * out["entropy"]
    kl_ctl = KLController(0.02, adaptive=True, target=6.0, horizon=10000); kl_ctl.update(kl_per_episode, n)

mask marks the real tokens of right- or left-padded rows; masked-off entries never count.
"""
from __future__ import annotations

import torch


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
