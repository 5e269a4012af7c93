"""Gymnasium wrapper of the text browser, and a batched form that steps many episodes at once.

reset(seed, options={"question": q}) -> (observation, info)
step(command) -> (observation, reward, terminated, truncated, info)

The environment's own reward is 0: what an answer is worth is the reward model's business, added
by `citeenv.wrappers.AnswerReward` (Gymnasium's way: behaviour changes go in wrappers).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import gymnasium as gym

from citeenv.backends import Backend
from citeenv.browser import Browser, BrowserConfig
from citeenv.spaces import CommandText, UnicodeText

MAX_OBS_CHARS = 200_000


class TextBrowserEnv(gym.Env):
    metadata = {"render_modes": ["ansi", "human"]}

    def __init__(
        self,
        backend: Backend,
        config: BrowserConfig | None = None,
        questions: Sequence[str] | None = None,
        render_mode: str | None = None,
    ):
        self.backend = backend
        self.config = config or BrowserConfig()
        self.questions = list(questions or [])
        self.browser = Browser(backend, self.config)
        self.render_mode = render_mode
        self.observation_space = UnicodeText(MAX_OBS_CHARS)
        self.action_space = CommandText(2 * self.config.max_quote_chars + 64)
        self._obs = ""

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.action_space.seed(seed)
        question = (options or {}).get("question")
        if question is None:
            if not self.questions:
                raise ValueError(
                    "No question: pass reset(options={'question': ...}) or give TextBrowserEnv(questions=[...])."
                )
            question = self.questions[int(self.np_random.integers(len(self.questions)))]
        self.browser.reset(question)
        return self._observe(), self.browser.info()

    def step(self, action: str):
        if self.browser.state is None:
            raise RuntimeError("call reset() before step()")
        self.browser.step(action)
        s = self.browser.state
        terminated = s.answer is not None
        truncated = s.phase == "done" and not terminated
        obs = self._observe()
        info = self.browser.info()
        if self.render_mode == "human":
            print(obs)
        return obs, 0.0, terminated, truncated, info

    def _observe(self) -> str:
        obs = self.browser.observation()
        if len(obs) > MAX_OBS_CHARS:  # only reachable with extreme configs; keep the space honest
            obs = obs[: MAX_OBS_CHARS - 20] + "\n...(cut)"
        self._obs = obs
        return obs

    def render(self):
        if self.render_mode == "ansi":
            return self._obs
        if self.render_mode == "human":
            print(self._obs)
        return None


@dataclass
class BatchStep:
    observations: list[str]
    rewards: list[float]
    terminated: list[bool]
    truncated: list[bool]
    infos: list[dict] = field(default_factory=list)


class BatchedTextBrowserEnv:
    """Many episodes stepped together, for rollouts: the policy batches its model calls over
    `active()` rows while each row's browser runs independently. Finished rows stay finished until
    the next reset; stepping them is an error, so a rollout cannot silently run past an episode's end.

    (Not a gymnasium.vector.VectorEnv: those batch observations into arrays, and text does not batch.)
    """

    def __init__(self, backends: Sequence[Backend] | Callable[[int], Backend], n: int | None = None,
                 config: BrowserConfig | None = None):
        if callable(backends):
            if n is None:
                raise ValueError("give n with a backend factory")
            backends = [backends(i) for i in range(n)]
        self.envs = [TextBrowserEnv(b, config) for b in backends]
        self.done = [True] * len(self.envs)

    def __len__(self) -> int:
        return len(self.envs)

    def reset(self, questions: Sequence[str], seed: int | None = None) -> tuple[list[str], list[dict]]:
        if len(questions) != len(self.envs):
            raise ValueError(f"{len(questions)} questions for {len(self.envs)} environments")
        obs, infos = [], []
        for i, (env, q) in enumerate(zip(self.envs, questions)):
            o, info = env.reset(seed=None if seed is None else seed + i, options={"question": q})
            obs.append(o)
            infos.append(info)
        self.done = [False] * len(self.envs)
        return obs, infos

    def active(self) -> list[int]:
        return [i for i, d in enumerate(self.done) if not d]

    def step(self, actions: dict[int, str]) -> dict[int, tuple]:
        """actions: row -> command, for active rows. Returns row -> (obs, reward, terminated, truncated, info)."""
        out = {}
        for i, a in actions.items():
            if self.done[i]:
                raise RuntimeError(f"row {i} has finished its episode; reset before stepping it")
            res = self.envs[i].step(a)
            self.done[i] = res[2] or res[3]
            out[i] = res
        return out
