"""The scripted expert (train/expert.py) and behaviour cloning (train/bc.py).

The expert browses real HotpotQA training records in a small in-memory corpus of their own
paragraphs; behaviour cloning trains a 2-layer model built from config with SmolLM2's real
tokenizer, so the prompt and command tokens are the ones the real policy uses."""
import json
import math
import re

import pytest
import torch

from citeagent.answer import Answer
from citeagent.browse import load_demonstrations, save_demonstration
from citeagent.policies.lm import POLICY_FILE, LMPolicy, build_prompt
from citeagent.reward.gold_judge import gold_score
from citeagent.rollout import browser_config
from citeagent.train import CPU_BROWSER, CPU_POLICY, hotpotqa_split
from citeagent.train.bc import BCConfig, _trainer, build_examples, read_demonstrations, tokenize_step, train_bc
from citeagent.train.expert import expert_demonstrations
from citeenv.browser import BrowserConfig
from citeenv.commands import Command, parse_command
from citeenv.corpus import Corpus
from citeenv.gym_env import TextBrowserEnv
from citeenv.index import in_memory_index
from citeenv.local import LocalBackend
from citeenv.sources.hotpotqa import paragraph_document, read_hotpotqa_records
from lm_support import one_thread, smollm2_tokenizer, tiny_llama  # noqa: F401 (fixture)

BROWSER = BrowserConfig(**CPU_BROWSER, max_actions=20)
_WS = re.compile(r"\s+")


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_thread):
    yield


@pytest.fixture(scope="module")
def records():
    train, _heldout = hotpotqa_split(list(read_hotpotqa_records()))
    return train[:5]


@pytest.fixture(scope="module")
def backend(records):
    docs = {}
    for r in records:
        for title, sentences in r["context"]:
            docs.setdefault(title, paragraph_document(title, sentences))
    corpus = Corpus(list(docs.values()), name="hotpotqa-test")
    return LocalBackend(corpus, in_memory_index(corpus))


@pytest.fixture(scope="module")
def clean_demos(records, backend):
    demos, stats = expert_demonstrations(records, backend, BROWSER, noise=0.0, seed=0)
    return demos, stats


@pytest.fixture(scope="module")
def tokenizer():
    tok = smollm2_tokenizer()
    return tok


def tiny_model(tokenizer, seed=0):
    return tiny_llama(tokenizer, seed).train()


def _norm(text):
    return _WS.sub(" ", text).strip()


def _gold_sentences(record):
    paras = dict((t, s) for t, s in record["context"])
    return {_norm(paras[t][i]) for t, i in record["supporting_facts"]}


def _replay(demo, backend):
    """Step the recorded actions through a fresh env; every observation must be the recorded one."""
    env = TextBrowserEnv(backend, BROWSER)
    obs, info = env.reset(options={"question": demo["question"]})
    for step in demo["steps"]:
        assert step["observation"] == obs
        obs, _, term, _, info = env.step(step["action"])
        assert info["error"] is None, (step["action"], info["error"])
    assert term
    return info


# --- the expert ------------------------------------------------------------------------------------------

def test_expert_quotes_exactly_the_gold_sentences(records, backend, clean_demos):
    demos, stats = clean_demos
    assert stats.episodes == len(demos) == len(records) and stats.skipped == 0
    assert stats.steps == sum(len(d["steps"]) for d in demos)
    by_id = {r["_id"]: r for r in records}
    for demo in demos:
        record = by_id[demo["id"]]
        assert demo["source"] == "expert" and demo["complete"] is True
        assert all(s["error"] is None for s in demo["steps"])
        info = _replay(demo, backend)
        assert info["answer"] == demo["answer"]
        actions = [s["action"] for s in demo["steps"]]
        assert actions[0] == "Search " + _norm(record["question"])
        assert actions[-2] == "End: Answer"
        # one quote per gold sentence: the sentence itself, or where a window edge cuts it, the larger
        # part (a quote comes from one window; the gold judge counts half a sentence or more)
        answer = Answer.from_dict(demo["answer"])
        gold = _gold_sentences(record)
        quoted = [[g for g in gold if q.text in g] for q in answer.quotes]
        assert all(len(m) == 1 for m in quoted) and {m[0] for m in quoted} == gold
        assert all(len(q.text) >= 0.5 * len(m[0]) for q, m in zip(answer.quotes, quoted))
        whole = sum(q.text == m[0] for q, m in zip(answer.quotes, quoted))
        assert whole >= len(gold) - 1
        assert actions[-1] == f"{record['answer']} " + "".join(f"[{n}]" for n in range(1, len(gold) + 1))
        titles = {t for t, _ in record["supporting_facts"]}
        assert actions.count("Back") == len(titles) - 1  # no noise: no wrong click to undo
        score = gold_score(answer, record)
        assert score["sp_recall"] == 1.0 and score["answer_f1"] == 1.0


def test_expert_noise_makes_and_corrects_mistakes(records, backend):
    demos, stats = expert_demonstrations(records, backend, BROWSER, noise=1.0, seed=3)
    assert stats.episodes == len(records) and stats.poor_queries == len(records)
    by_id = {r["_id"]: r for r in records}
    n_wrong = []
    for demo in demos:
        record = by_id[demo["id"]]
        _replay(demo, backend)
        gold_titles = {t for t, _ in record["supporting_facts"]}
        steps = demo["steps"]
        actions = [s["action"] for s in steps]
        # a poor first query, then the question itself
        assert actions[0].startswith("Search ") and actions[0] != actions[1] == "Search " + _norm(record["question"])
        # a click that opened a non-gold page, undone by Back at once
        wrong = [i for i in range(len(steps) - 1) if actions[i].startswith("Clicked on link")
                 and actions[i + 1] == "Back"
                 and not any(f"Current page: {t} (" in steps[i + 1]["observation"] for t in gold_titles)]
        n_wrong.append(len(wrong))
        # exactly the mistakes are flagged, so behaviour cloning skips them as targets
        assert [i for i, st in enumerate(steps) if st.get("noise")] == sorted([0] + wrong)
        score = gold_score(Answer.from_dict(demo["answer"]), record)
        assert score["sp_recall"] == 1.0 and score["answer_f1"] == 1.0
    # every results list with a non-gold result gets a wrong click; a title searched by name may list
    # only its own page, so an episode can lack one
    assert sum(n_wrong) == stats.wrong_clicks and sum(n > 0 for n in n_wrong) >= len(records) - 1


def test_mistakes_are_not_targets_and_answers_can_repeat(tmp_path, records, backend, tokenizer):
    demos, stats = expert_demonstrations(records, backend, BROWSER, noise=1.0, seed=3)
    path = tmp_path / "noisy.jsonl"
    for d in demos:
        save_demonstration(path, d)
    episodes, counts = read_demonstrations([str(path)], BROWSER)
    assert counts["noise_steps_skipped"] == stats.poor_queries + stats.wrong_clicks
    kept = [a for e in episodes for _, a in e.steps]
    assert len(kept) == sum(len(d["steps"]) for d in demos) - counts["noise_steps_skipped"]
    # the recoveries stay: every episode still opens with the real query and keeps its Backs
    assert all(e.steps[0][1].startswith("Search ") and len(e.steps[0][1].split()) > 4 for e in episodes)
    one = build_examples(tokenizer, episodes, BCConfig(demos=[str(path)]))[0]
    three = build_examples(tokenizer, episodes, BCConfig(demos=[str(path)], answer_repeats=3))[0]
    assert len(three) == len(one) + 2 * len(episodes)  # one answering step per episode


def test_expert_demos_round_trip_the_browse_format(tmp_path, clean_demos):
    demos, _ = clean_demos
    path = tmp_path / "demos.jsonl"
    for d in demos:
        save_demonstration(path, d)
    assert load_demonstrations(path) == demos
    episodes, counts = read_demonstrations([str(path)], BROWSER)
    assert counts["episodes"] == len(demos) and counts["by_source"] == {"expert": len(demos)}
    assert [len(e.steps) for e in episodes] == [len(d["steps"]) for d in demos]


# --- the loss mask ---------------------------------------------------------------------------------------

def test_loss_covers_exactly_the_command_tokens(tmp_path, tokenizer, clean_demos):
    demos, _ = clean_demos
    step = demos[0]["steps"][2]  # a click on a results page
    obs, action = step["observation"], step["action"]
    ex = tokenize_step(tokenizer, obs, action, "short", 384)
    prompt_ids = tokenizer(build_prompt(tokenizer, obs, "short", 384), add_special_tokens=False).input_ids
    command_ids = tokenizer(action, add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
    assert ex["input_ids"] == prompt_ids + command_ids
    assert ex["completion_mask"] == [0] * len(prompt_ids) + [1] * len(command_ids)

    # the prompt part is what the decoder conditions on
    policy = LMPolicy(model=tiny_model(tokenizer).eval(), tokenizer=tokenizer, guided=False, system_prompt="short",
                      max_observation_tokens=384, max_new_tokens=4)
    env_info = {"phase": "browse", "valid_commands": ["Back"], "link_ids": [], "quotable_text": "", "quote_numbers": []}
    policy.act(obs, env_info)
    assert policy.last_generations[0].prompt_ids == prompt_ids

    # TRL turns the mask into labels: -100 on the prompt, the ids on the command and its EOS
    last = demos[0]["steps"][-1]  # the answer
    rows = [ex, tokenize_step(tokenizer, last["observation"], last["action"], "short", 384)]
    model = tiny_model(tokenizer)
    config = BCConfig(demos=["unused.jsonl"], heldout=0.0, batch_size=2)
    trainer = _trainer(config, model, tokenizer, rows, [], str(tmp_path / "work"))
    prepared = {tuple(r["input_ids"]): r["labels"] for r in trainer.train_dataset}
    labels = prepared[tuple(ex["input_ids"])]
    assert labels == [-100] * len(prompt_ids) + command_ids
    assert tokenizer.decode([t for t in labels if t != -100]) == action + tokenizer.eos_token

    # the trainer's loss (LM head on the command tokens only) is the mean NLL of the command tokens
    # computed from the full logits
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
    model.eval()
    with torch.no_grad():
        loss = trainer.compute_loss(model, batch).item()
    assert loss == pytest.approx(_completion_loss(model, rows), rel=1e-4)


# --- bad input fails before training ---------------------------------------------------------------------

def _rejected_demo(demo, backend, bad_action, at=1):
    """The demo's first `at` steps, then bad_action as the env really answered it, then the rest."""
    env = TextBrowserEnv(backend, BROWSER)
    obs, _ = env.reset(options={"question": demo["question"]})
    for step in demo["steps"][:at]:
        obs, *_ = env.step(step["action"])
    _, _, _, _, info = env.step(bad_action)
    bad = {"observation": obs, "action": bad_action, "error": info["error"]}
    return dict(demo, steps=demo["steps"][:at] + [bad] + demo["steps"][at:])


def test_a_rejected_command_fails_before_any_model_is_loaded(tmp_path, backend, clean_demos):
    demos, _ = clean_demos
    path = tmp_path / "people.jsonl"
    save_demonstration(path, demos[0])
    save_demonstration(path, _rejected_demo(demos[1], backend, "Clicked on link 99"))
    # a model name that cannot load: reaching the model would raise OSError instead of this message
    config = BCConfig(demos=[str(path)], model=str(tmp_path / "no-model"), out=str(tmp_path / "out"))
    with pytest.raises(ValueError, match=r"people\.jsonl, line 2, step 2: the environment rejected the action "
                                         r"'Clicked on link 99': There is no link 99 on this view"):
        train_bc(config)
    assert not (tmp_path / "out").exists()

    unparsable = dict(demos[0], steps=demos[0]["steps"][:1] + [dict(demos[0]["steps"][1], action="Jump to 3")])
    path2 = tmp_path / "typo.jsonl"
    save_demonstration(path2, unparsable)
    with pytest.raises(ValueError, match=r"typo\.jsonl, line 1, step 2: the action 'Jump to 3' is not a command"):
        train_bc(BCConfig(demos=[str(path2)], model=str(tmp_path / "no-model")))


def test_bad_files_and_configs_fail_early(tmp_path, clean_demos, tokenizer):
    demos, _ = clean_demos
    good = tmp_path / "good.jsonl"
    save_demonstration(good, demos[0])
    with pytest.raises(FileNotFoundError, match="missing.jsonl"):
        train_bc(BCConfig(demos=[str(good), str(tmp_path / "missing.jsonl")]))
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(ValueError, match="empty.jsonl has no demonstrations"):
        train_bc(BCConfig(demos=[str(tmp_path / "empty.jsonl")]))
    (tmp_path / "junk.jsonl").write_text(json.dumps(demos[0]) + "\n{not json\n")
    with pytest.raises(ValueError, match=r"junk\.jsonl, line 2: not valid JSON"):
        train_bc(BCConfig(demos=[str(tmp_path / "junk.jsonl")]))
    only_incomplete = tmp_path / "incomplete.jsonl"
    save_demonstration(only_incomplete, dict(demos[0], complete=False))
    with pytest.raises(ValueError, match="No complete episodes"):
        train_bc(BCConfig(demos=[str(only_incomplete)]))
    for bad in ({"lr": 0.0}, {"lr": -1e-4}, {"epochs": 0}, {"heldout": 1.0}, {"demos": []}, {"batch_size": 0}):
        with pytest.raises(ValueError):
            BCConfig(**({"demos": [str(good)]} | bad))
    assert BCConfig(demos=str(good) + "," + str(good)).demos == [str(good)] * 2
    assert BCConfig(demos=[str(good)]).lr == 2e-4 and BCConfig(demos=[str(good)], lora=False).lr == 5e-5
    with pytest.raises(ValueError, match="--max-length 40 is too small for any example: the shortest is"):
        train_bc(BCConfig(demos=[str(good)], max_length=40, heldout=0.0), model=tiny_model(tokenizer),
                 tokenizer=tokenizer)


# --- a tiny training run ---------------------------------------------------------------------------------

def _completion_loss(model, rows):
    """Mean NLL per command token, computed directly from the logits."""
    model.eval()
    total, n = 0.0, 0
    with torch.no_grad():
        for r in rows:
            ids = torch.tensor([r["input_ids"]])
            logp = torch.log_softmax(model(ids).logits[0, :-1].float(), -1)
            target = ids[0, 1:]
            mask = torch.tensor(r["completion_mask"][1:], dtype=torch.bool)
            total -= logp[torch.arange(len(target)), target][mask].sum().item()
            n += int(mask.sum())
    return total / n


@pytest.mark.parametrize("lora", [True, False], ids=["lora", "full"])
def test_bc_lowers_the_loss_and_saves_a_policy(tmp_path, lora, tokenizer, backend, clean_demos):
    demos, _ = clean_demos
    steps = demos[0]["steps"][:6]  # a handful of examples: search, clicks, quotes, back
    path = tmp_path / "demos.jsonl"
    save_demonstration(path, dict(demos[0], steps=steps))
    save_demonstration(path, dict(demos[1], complete=False))  # skipped, counted
    if not lora:  # a second episode, held out for the validation loss
        save_demonstration(path, dict(demos[2], steps=demos[2]["steps"][:4]))
    config = BCConfig(demos=[str(path)], out=str(tmp_path / "bc"), lora=lora, lora_r=8, lr=2e-2 if lora else 3e-3,
                      epochs=6, batch_size=3, warmup=0.0, max_observation_tokens=96, heldout=0.0 if lora else 0.5,
                      logging_steps=1)
    model = tiny_model(tokenizer)
    initial = set(model.state_dict())
    rows = [tokenize_step(tokenizer, s["observation"], s["action"], "short", 96) for s in steps]
    other = [tokenize_step(tokenizer, s["observation"], s["action"], "short", 96) for s in demos[2]["steps"][:4]]
    before, before_other = _completion_loss(model, rows), _completion_loss(model, other)
    out = train_bc(config, model=model, tokenizer=tokenizer)

    report = json.loads((out / "bc_report.json").read_text())
    assert report["episodes"]["incomplete_skipped"] == 1
    assert report["train_loss"]["last_logged"] < report["train_loss"]["first_logged"]
    if lora:
        assert report["examples"] == {"train": 6, "validation": 0, "dropped_too_long": 0} and report["steps"] == 12
        assert report["validation_loss"] == {"before": None, "after": None}
    else:  # the split is seeded; either episode may be the held-out one
        assert sorted([report["examples"]["train"], report["examples"]["validation"]]) == [4, 6]
        if report["examples"]["train"] == 4:
            rows, before = other, before_other
        val = report["validation_loss"]
        assert math.isfinite(val["before"]) and math.isfinite(val["after"])
    assert not (out / "adapter_config.json").exists()  # LoRA merged into plain weights
    saved = json.loads((out / POLICY_FILE).read_text())
    assert saved["browser"] == CPU_BROWSER
    assert saved["policy"] == CPU_POLICY | {"max_observation_tokens": 96}
    assert saved["policy"]["guided"] is False and saved["policy"]["system_prompt"] == "short"

    policy = LMPolicy(str(out), max_new_tokens=12)
    assert not policy.config.guided and policy.config.system_prompt == "short"
    assert policy.config.max_observation_tokens == 96
    trained = policy.model
    assert set(trained.state_dict()) == initial  # a plain Llama, no adapter weights left
    after = _completion_loss(trained, rows)
    assert after < before - 1.0, (before, after)  # ~11 nats (uniform over 49k tokens) before

    env = TextBrowserEnv(backend, browser_config(policy, max_actions=20))
    obs, info = env.reset(options={"question": demos[0]["question"]})
    action = policy.act(obs, info)
    assert isinstance(parse_command(action), Command)
    _, _, _, _, info = env.step(action)
    assert info["error"] is None
    assert math.isfinite(report["train_loss"]["mean"]) and report["tokens_per_second"] > 0


def test_cli_flags_build_the_config(tmp_path, monkeypatch):
    from citeagent.cli import build_parser
    from citeagent.train import bc

    seen = {}
    monkeypatch.setattr(bc, "train_bc", lambda config: seen.setdefault("config", config) and tmp_path)

    def parse(*argv):
        return build_parser(list(argv)).parse_args(list(argv))

    args = parse("train", "bc", "--demos", "a.jsonl,b.jsonl", "--no-lora", "--epochs", "1.5", "--out", "x",
                 "--max-steps", "7", "--lora-r", "4")
    assert args.func(args) == 0
    c = seen["config"]
    assert c.demos == ["a.jsonl", "b.jsonl"] and c.lora is False and c.lr == 5e-5 and c.epochs == 1.5
    assert c.out == "x" and c.max_steps == 7 and c.lora_r == 4 and c.browser == CPU_BROWSER
    with pytest.raises(ValueError, match="--lr must be > 0"):
        args = parse("train", "bc", "--demos", "a.jsonl", "--lr", "0")
        args.func(args)
    args = parse("train", "demos", "--questions", "0")
    with pytest.raises(ValueError, match="--questions must be at least 1"):
        args.func(args)
