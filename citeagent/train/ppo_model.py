"""PPO's model: the policy LM (LoRA adapters or all weights trainable) with a scalar value head,
the reference policy it is held close to, and the per-token statistics of its commands."""
from __future__ import annotations

import copy
from typing import NamedTuple

import torch
import torch.nn as nn

from citeagent.train.common import top_layers
from citeagent.train.ppo_config import PPOConfig
from citeagent.train.ppo_rows import only_layers


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


def make_actor_critic(lm, cfg: PPOConfig, device) -> tuple[ActorCritic, nn.Module | None]:
    """(policy + value head, reference). With LoRA the reference is the policy with its adapters
    off (None here); full fine-tuning keeps a frozen copy of the starting weights."""
    _disable_dropout(lm)
    reference = None
    if cfg.lora:
        from peft import LoraConfig, get_peft_model

        top = top_layers(lm, cfg.lora_layers)
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
