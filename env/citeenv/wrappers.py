"""Behaviour changes to the browser environment, as Gymnasium wrappers."""
from __future__ import annotations

from typing import Callable

import gymnasium as gym


class AnswerReward(gym.Wrapper):
    """Adds `score_fn(answer_dict)` as the reward of the step that ends an episode with an answer
    (WebGPT: the reward model's score of the final answer). Truncated episodes get `truncation_reward`."""

    def __init__(self, env: gym.Env, score_fn: Callable[[dict], float], truncation_reward: float = 0.0):
        super().__init__(env)
        self.score_fn = score_fn
        self.truncation_reward = truncation_reward

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        if terminated and "answer" in info:
            reward = float(self.score_fn(info["answer"]))
        elif truncated:
            reward = self.truncation_reward
        return obs, reward, terminated, truncated, info
