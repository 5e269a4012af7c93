"""Gymnasium wrapper of the text browser, and a batched form that steps many episodes at once.

reset(seed, options={"question": q}) -> (observation, info); without a question it draws one from
the environment's questions (its data set)
step(command) -> (observation, reward, terminated, truncated, info)

Registered with Gymnasium as "citeenv/TextBrowser-v0" (citeenv/__init__.py):

    env = gymnasium.make("citeenv/TextBrowser-v0", corpus="pydocs", dataset="corpora/pydocs_qa.jsonl")
    envs = gymnasium.make_vec("citeenv/TextBrowser-v0", num_envs=4, corpus="hotpotqa")
    # AsyncVectorEnv: vectorization_mode="async", vector_kwargs={"shared_memory": False}

The environment's own reward is 0: what an answer is worth is the reward model's business (a
Gymnasium wrapper, or the training loop, adds it).
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import gymnasium as gym

from citeenv.backends import Backend
from citeenv.browser import Browser, BrowserConfig
from citeenv.spaces import CommandText, UnicodeText

MAX_OBS_CHARS = 200_000


def make_env(corpus: str = "pydocs", dataset: str | None = None, questions: Sequence[str] | None = None,
             search: str = "bm25", render_mode: str | None = None, config: BrowserConfig | None = None,
             **browser_fields) -> "TextBrowserEnv":
    """The registered environment: a local corpus (its index built on first use) and the questions
    reset() draws from: `questions`, else `dataset` (a JSONL of {"question": ...} lines, or
    "hotpotqa"), else the corpus's own question set where it has one (hotpotqa). browser_fields
    are BrowserConfig fields (e.g. max_actions=10)."""
    from citeenv.index import open_index
    from citeenv.local import LocalBackend

    if questions is None:
        questions = load_questions(dataset if dataset is not None else DEFAULT_DATASETS.get(corpus), corpus)
    corpus_, searcher = open_index(corpus, kind=search, build_if_missing=True)
    config = config or BrowserConfig(**browser_fields)
    return TextBrowserEnv(LocalBackend(corpus_, searcher), config, questions=questions, render_mode=render_mode)


# The question set reset() draws from when none is given, per corpus.
DEFAULT_DATASETS = {"hotpotqa": "hotpotqa"}


def load_questions(dataset: str | None, corpus: str = "") -> list[str]:
    if dataset is None:
        raise ValueError(f'No questions for the corpus {corpus!r}: pass dataset="questions.jsonl" (one '
                         '{"question": ...} a line) or questions=[...].')
    if dataset == "hotpotqa":
        from citeenv.sources.hotpotqa import read_hotpotqa_records

        return [r["question"] for r in read_hotpotqa_records()]
    from citeenv.jsonl import read_jsonl

    records = read_jsonl(dataset).records
    missing = [i for i, r in enumerate(records, 1) if not isinstance(r.get("question"), str)]
    if missing or not records:
        raise ValueError(f"{dataset}: every record needs a 'question' text field (records without one: "
                         f"{missing[:5]}); the file has {len(records)} records.")
    return [r["question"] for r in records]


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
