"""Training the browsing policy: behaviour cloning (bc.py), best-of-n (policies/best_of_n.py) and
PPO (ppo.py), WebGPT's pipeline.

Shared conventions live here so every trainer and evaluation agrees on them:

- HotpotQA split: the first 30% of the shared dev file (266 of 886 questions) is held out; it is
  what `citeagent eval --dataset hotpotqa --limit 266` scores and what the support judge never saw.
  Demonstrations, best-of-n tuning and PPO rollouts use only the other questions.
- The CPU layout: a compact page window and short result list, so one observation is ~250
  tokens and a 2-core machine can train in an hour. A trained model saves the layout it was
  trained with (policies/lm.py POLICY_FILE), so `--policy DIR` browses the same way.
"""
from __future__ import annotations

__all__ = ["CPU_BROWSER", "CPU_POLICY", "HOTPOTQA_HELDOUT_FRACTION", "hotpotqa_split"]

# BrowserConfig fields of the CPU training layout (everything else keeps its default).
CPU_BROWSER = {"search_k": 5, "snippet_chars": 100, "window_chars": 600, "past_actions_shown": 4}
# LMPolicyConfig fields a trained policy runs with.
CPU_POLICY = {"guided": False, "system_prompt": "short", "max_observation_tokens": 384, "repetition_penalty": 1.0,
              "max_answer_tokens": 48}  # a HotpotQA answer is a few words and its markers


def __getattr__(name: str):
    # The split lives with the data sets; imported on first use, so that building `citeagent train`'s
    # command line (citeagent/train/cli.py) imports nothing heavy.
    if name in ("HOTPOTQA_HELDOUT_FRACTION", "hotpotqa_split"):
        from citeagent.eval import datasets

        return getattr(datasets, name)
    raise AttributeError(f"module 'citeagent.train' has no attribute {name!r}")
