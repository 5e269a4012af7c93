"""The rows PPO trains on (one per step: prompt ids + the command ids the policy wrote) and the
frozen-layer cache over them: with LoRA on the top N layers only, the layers below never change
within an iteration, so their output is computed once a row and every later forward pass (the
reference log-probs, each PPO epoch) runs the top N layers only."""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.nn as nn


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


def frozen_layers(lm, cfg) -> int:
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
def prefix_cache_error(model, rows: Rows, layer: int, cfg, device) -> float:
    """The largest |log-prob difference| between the split forward and the full one on the first
    (shortest) rows: 0 up to rounding for a decoder `only_layers` can split, large for one that
    rescales its input embeddings in its forward (Granite)."""
    chunk = sorted(range(len(rows)), key=rows.lengths().__getitem__)[:cfg.minibatch_size]
    ids, attn, cmd, _ = rows.select(chunk, device)
    full = model(ids, attn, cmd, cfg.temperature, with_entropy=False)
    split = model(ids, attn, cmd, cfg.temperature, with_entropy=False,
                  prefix=(layer, bottom_hidden(model.lm, ids, attn, layer)))
    return float(torch.maximum((full.logp - split.logp).abs().max(), (full.values - split.values).abs().max()))


def checked_prefix_layer(accelerator, model, rows: Rows, layer: int, cfg, say) -> int:
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
