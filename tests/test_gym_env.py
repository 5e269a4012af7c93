"""Gymnasium conventions: the registered environment, reset() drawing a question from its data
set, Gymnasium's own checker, and gymnasium.vector. A real BM25 index over a small JSONL corpus."""
import json

import gymnasium
import pytest
from gymnasium.utils.env_checker import check_env

import citeenv
from citeenv.gym_env import TextBrowserEnv

QUESTIONS = ["What erupts from a volcano?", "Who writes a piano sonata?", "What does yeast do to bread?"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("gym")
    topics = ["volcano eruption lava", "piano sonata composer", "rocket launch orbit", "bread yeast oven"]
    with open(d / "docs.jsonl", "w") as f:
        for i in range(12):
            f.write(json.dumps({"id": f"doc{i}", "title": f"Page {i}",
                                "text": f"Page {i} is about {topics[i % 4]}. It has detail number {i}."}) + "\n")
    with open(d / "questions.jsonl", "w") as f:
        for q in QUESTIONS:
            f.write(json.dumps({"question": q, "answers": ["x"]}) + "\n")
    return f"jsonl:{d / 'docs.jsonl'}", str(d / "questions.jsonl")


def test_registered_env_draws_questions_from_its_data_set_and_passes_check_env(files):
    corpus, dataset = files
    assert citeenv.ENV_ID in gymnasium.registry
    env = gymnasium.make(citeenv.ENV_ID, corpus=corpus, dataset=dataset, max_actions=6)
    assert isinstance(env.unwrapped, TextBrowserEnv) and env.unwrapped.config.max_actions == 6
    seen = set()
    for seed in range(12):
        _, info = env.reset(seed=seed)
        seen.add(info["question"])
    assert seen <= set(QUESTIONS) and len(seen) > 1
    # the same seed draws the same question
    assert env.reset(seed=3)[1]["question"] == env.reset(seed=3)[1]["question"]
    obs, reward, terminated, truncated, info = env.step("Search volcano")
    assert "Page" in obs and reward == 0.0 and info["error"] is None
    check_env(env.unwrapped, skip_render_check=True)


def test_an_explicit_question_still_wins(files):
    corpus, dataset = files
    env = gymnasium.make(citeenv.ENV_ID, corpus=corpus, dataset=dataset)
    _, info = env.reset(options={"question": "Anything else?"})
    assert info["question"] == "Anything else?"


def test_without_questions_the_message_says_what_to_pass(files, tmp_path):
    corpus, _ = files
    with pytest.raises(ValueError, match='pass dataset="questions.jsonl"'):
        gymnasium.make(citeenv.ENV_ID, corpus=corpus)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"q": "no question field"}\n')
    with pytest.raises(ValueError, match="needs a 'question' text field"):
        gymnasium.make(citeenv.ENV_ID, corpus=corpus, dataset=str(bad))


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_vector_envs_step_text_batches(files, mode):
    corpus, dataset = files
    kwargs = {"vector_kwargs": {"shared_memory": False}} if mode == "async" else {}  # text has no fixed size
    envs = gymnasium.make_vec(citeenv.ENV_ID, num_envs=2, vectorization_mode=mode, corpus=corpus, dataset=dataset,
                              **kwargs)
    try:
        obs, infos = envs.reset(seed=0)
        assert len(obs) == 2 and all(o.startswith("Question: ") for o in obs)
        obs, rewards, terminated, truncated, infos = envs.step(("Search volcano", "Bogus"))
        assert "search results" in obs[0] and "Error:" in obs[1]
        assert list(rewards) == [0.0, 0.0] and not any(terminated) and not any(truncated)
    finally:
        envs.close()
