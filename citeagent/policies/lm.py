"""The LM policy: a chat LM reads the observation and writes the next command, grammar-constrained.

Each observation is standalone (docs/ENV_SPEC.md), so the prompt is just a system instruction and
the observation, and rows of a batch are independent. The last step's token ids and log-probs stay
on the policy (`last_generations`) for training code to pick up.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch

from citeagent.policies.guided import guide
from citeenv.observation import sections
from citeagent.policies.constrained import CommandGrammar, DecodeConfig, Generation, TokenIndex, generate

SYSTEM = """You answer questions by browsing a text-only web and quoting evidence. Reply with exactly one command:
Search <query> - search the web
Clicked on link <id> - open the link shown as 【id†text】
Find in page: <text> - jump to the next place the text occurs
Quote: <text> - copy a passage of the current page, word for word, as evidence
Scrolled down <1|2|3> / Scrolled up <1|2|3> - move through the page
Top - go to the start of the page
Back - go to the previous page
End: Answer - stop browsing when the quotes answer the question
End: Decline - stop when no answer can be found
When asked for the answer, write one paragraph that cites the quotes with [n] markers."""

# Trained policies (behaviour cloning, PPO) learned the commands from examples; a one-line system
# prompt keeps their prompts short, which is most of the cost of a step on a CPU.
SHORT_SYSTEM = "Browse, quote evidence, answer with [n] citations. Reply with one command."
SYSTEM_PROMPTS = {"full": SYSTEM, "short": SHORT_SYSTEM}

# A trained model directory carries the options it was trained with in this file, so that
# `--policy DIR` browses with the same prompt and observation layout.
POLICY_FILE = "citeagent_policy.json"



@dataclass
class LMPolicyConfig:
    max_new_tokens: int = 48  # a command; the grammar steers to an end past this
    max_answer_tokens: int = 160
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    seed: int = 0
    max_observation_tokens: int = 1536  # longer observations lose the middle of the page window
    batch_size: int = 8
    device: str = "auto"  # a loaded model: the first CUDA GPU if there is one, else the CPU
    dtype: str = "float32"
    # The browsing scaffold (policies/guided.py) for a model not trained to browse: it picks the
    # command, the model writes its argument. Off for behaviour cloning and RL.
    guided: bool = True
    system_prompt: str = "full"  # "full", "short" (trained policies) or the text itself
    repetition_penalty: float = 1.3  # on answer tokens already written; training sets 1.0


def saved_policy_options(model_dir) -> dict:
    """{"policy": LMPolicyConfig overrides, "browser": BrowserConfig overrides} saved with a trained
    model (empty for a model that has none, e.g. a hub name)."""
    import json
    from pathlib import Path

    f = Path(str(model_dir)) / POLICY_FILE
    if not f.is_file():
        return {}
    data = json.loads(f.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{f}: expected a JSON object with 'policy' and 'browser' options")
    return data


def save_policy_options(model_dir, policy: dict, browser: dict, extra: dict | None = None) -> None:
    import json
    from pathlib import Path

    data = {"policy": policy, "browser": browser} | (extra or {})
    (Path(model_dir) / POLICY_FILE).write_text(json.dumps(data, indent=2))


class LMPolicy:
    def __init__(self, model_name: str | None = None, config: LMPolicyConfig | None = None, *,
                 model=None, tokenizer=None, **overrides):
        """model_name: None = the bundled SmolLM2-135M-Instruct, else a HF name or local dir.
        model/tokenizer: an already loaded pair (tests, training code) instead of model_name.
        overrides: LMPolicyConfig fields, e.g. LMPolicy(temperature=0.7)."""
        known = {f.name for f in fields(LMPolicyConfig)}
        unknown = set(overrides) - known
        if unknown:
            raise TypeError(f"unknown LMPolicy option(s) {sorted(unknown)}; known: {sorted(known)}")
        saved = saved_policy_options(model_name) if model_name else {}
        stored = {k: v for k, v in saved.get("policy", {}).items() if k in known}
        self.config = replace(config or LMPolicyConfig(), **(stored | overrides))
        # BrowserConfig fields the model was trained with; rollouts and evaluation apply them.
        self.browser_overrides: dict = dict(saved.get("browser", {}))
        from citeagent.models import load_policy_model, resolve_device, torch_dtype

        if model is not None and self.config.device == "auto":  # a model handed in stays where it is
            self.config.device = str(model.device)
        self.config.device = resolve_device(self.config.device)
        if model is None:
            model, tokenizer = load_policy_model(model_name, dtype=torch_dtype(self.config.dtype))
        self.model = model.to(self.config.device)
        self.tokenizer = tokenizer
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.name = f"lm:{model_name or 'smollm2'}"
        eos = {tokenizer.eos_token_id}
        gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
        eos |= set(gen_eos if isinstance(gen_eos, list) else [gen_eos])
        vocab = model.get_output_embeddings().weight.shape[0]
        self.index = TokenIndex.for_tokenizer(tokenizer, vocab, sorted(e for e in eos if e is not None))
        self.generator = torch.Generator().manual_seed(self.config.seed)
        self.tokens_generated = 0  # cumulative, evaluation reports it
        self.last_tokens: list[int] = []  # per row of the last act_batch
        self.last_generations = []  # per row: Generation (token ids, log-probs, prompt ids)

    # --- the Policy protocol and its capabilities (policies/base.py) ---------------------------------
    @property
    def temperature(self) -> float:
        return self.config.temperature

    @temperature.setter
    def temperature(self, value: float) -> None:
        self.config = replace(self.config, temperature=value)

    def reseed(self, seed: int) -> None:
        self.generator.manual_seed(seed)

    def act(self, observation: str, info: dict) -> str:
        return self.act_batch([observation], [info])[0]

    def act_batch(self, observations: list[str], infos: list[dict]) -> list[str]:
        gens = []
        bs = self.config.batch_size
        for lo in range(0, len(observations), bs):
            gens += self.decode(observations[lo:lo + bs], infos[lo:lo + bs])
        self.last_generations = gens
        self.last_tokens = [g.n_tokens for g in gens]
        self.tokens_generated += sum(self.last_tokens)
        return [g.text for g in gens]

    def decode(self, observations: list[str], infos: list[dict]) -> list[Generation]:
        """One batch through the constrained decoder; the counters above are act_batch's business."""
        c = self.config
        prompts = [self.prompt(o) for o in observations]
        enc = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        grammars = [CommandGrammar(guide(i) if c.guided else i) for i in infos]
        limits = [c.max_answer_tokens if g.answer else c.max_new_tokens for g in grammars]
        dc = DecodeConfig(max_new_tokens=c.max_new_tokens, temperature=c.temperature, top_p=c.top_p, seed=c.seed,
                          repetition_penalty=c.repetition_penalty)
        dev = self.model.device
        return generate(self.model, self.index, enc.input_ids.to(dev), enc.attention_mask.to(dev), grammars,
                        dc, max_new_tokens=limits, generator=self.generator)

    # --- the prompt ----------------------------------------------------------------------------------
    def prompt(self, observation: str) -> str:
        return build_prompt(self.tokenizer, observation, self.config.system_prompt, self.config.max_observation_tokens)


def build_prompt(tokenizer, observation: str, system_prompt: str = "full", max_observation_tokens: int = 1536) -> str:
    """The text the model continues with a command: system line, then the (fitted) observation.
    Training code builds its examples with this same function, so train and test prompts match."""
    system = SYSTEM_PROMPTS.get(system_prompt, system_prompt)
    obs = fit_observation(observation, tokenizer, max_observation_tokens)
    messages = [{"role": "system", "content": system}, {"role": "user", "content": obs}]
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return f"{system}\n\n{obs}\n"  # a base model without a chat template


def command_end_token(tokenizer) -> str:
    """The token that ends a command in training targets: the chat turn end (EOS), which the
    constrained decoder also accepts as the end of a complete command."""
    return tokenizer.eos_token


def fit_observation(observation: str, tokenizer, max_tokens: int) -> str:
    """Cut an observation to about max_tokens by dropping the middle of the page window first,
    then of the quotes / past actions. The question line and the closing lines are never cut."""
    def n_tokens(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False).input_ids)

    if n_tokens(observation) <= max_tokens:
        return observation
    # [question] [quotes, past actions] [current page line] [window] [closing lines]
    blocks = sections(observation).blocks()
    texts = ["\n".join(b) for b in blocks]
    for cut in (3, 1):  # the window, then the quotes and past actions
        others = sum(n_tokens(t) for i, t in enumerate(texts) if i != cut and t)
        texts[cut] = _squeeze(texts[cut], tokenizer, max(32, max_tokens - others))
        if sum(n_tokens(t) for t in texts if t) <= max_tokens:
            break
    return "\n".join(t for t, b in zip(texts, blocks) if b)


def _squeeze(text: str, tokenizer, n: int) -> str:
    """Keep the first and last n/2 tokens of text (a page's head and tail both orient the reader)."""
    ids = tokenizer(text, add_special_tokens=False).input_ids
    if len(ids) <= n:
        return text
    head, tail = ids[: n // 2], ids[len(ids) - (n - n // 2):]
    return tokenizer.decode(head) + " … " + tokenizer.decode(tail)
