"""The Policy protocol (policies/base.py): every policy implements it and the capabilities it
claims, and rollouts and best-of-n need nothing beyond it from a policy that has no extras."""
import pytest

from lm_support import one_thread, smollm2_tokenizer, tiny_llama  # noqa: F401 (fixture)
from citeagent.policies import make_policy
from citeagent.policies.base import (
    CountsTokens, HasBrowserLayout, Policy, RecordsGenerations, Samples, ScoresConfidence,
)
from citeagent.policies.best_of_n import best_of_n
from citeagent.rollout import browser_config, run_episodes
from citeenv.corpus import Corpus
from citeenv.documents import Document
from citeenv.local import LocalBackend
from citeenv.search.bm25 import BM25Searcher

CAPABILITIES = (HasBrowserLayout, ScoresConfidence, CountsTokens, RecordsGenerations, Samples)
DOCS = [Document(id="a", url="https://example.org/a", title="Paris",
                 text="Paris is the capital of France. It lies on the Seine.")]


@pytest.fixture(scope="module")
def backend():
    corpus = Corpus(DOCS, name="tiny")
    return LocalBackend(corpus, BM25Searcher.build(corpus.passages))


class MinimalPolicy:
    """Only what the protocol requires: no layout, no confidence, no tokens, no sampling."""
    name = "minimal"

    def act(self, observation, info):
        if info["phase"] == "answer":
            return "Paris."
        return "End: Answer" if info["past_actions"] else f"Search {info['question']}"

    def act_batch(self, observations, infos):
        return [self.act(o, i) for o, i in zip(observations, infos)]


def capabilities(policy) -> set[str]:
    return {c.__name__ for c in CAPABILITIES if isinstance(policy, c)}


def test_the_baseline_is_a_policy_that_scores_its_confidence():
    policy = make_policy("baseline")
    assert isinstance(policy, Policy)
    assert capabilities(policy) == {"ScoresConfidence"}


def test_the_lm_policy_has_every_capability_but_confidence(one_thread):
    from citeagent.policies.lm import LMPolicy

    tok = smollm2_tokenizer()
    policy = LMPolicy(model=tiny_llama(tok), tokenizer=tok, max_new_tokens=4, max_answer_tokens=4)
    assert isinstance(policy, Policy)
    assert capabilities(policy) == {"HasBrowserLayout", "CountsTokens", "RecordsGenerations", "Samples"}
    policy.temperature = 0.7
    assert policy.temperature == policy.config.temperature == 0.7


def test_a_minimal_policy_runs_episodes_and_best_of_n_refuses_it(backend):
    policy = MinimalPolicy()
    assert isinstance(policy, Policy) and capabilities(policy) == set()
    assert browser_config(policy, max_actions=5).max_actions == 5
    [result] = run_episodes(backend, policy, ["What is the capital of France?"])
    assert result.answer.text == "Paris." and result.tokens_generated == 0
    assert result.generations == [] and result.score is None
    with pytest.raises(ValueError, match="needs a sampling policy: minimal is deterministic"):
        best_of_n(backend, policy, ["What is the capital of France?"], 2, reward_model=None)
