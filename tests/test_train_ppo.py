"""PPO (citeagent/train/ppo.py): the pure parts against values computed by hand, the masking of
observation tokens, config validation, and real iterations end to end on a tiny model.

The tiny policy is a 2-layer Llama built from config with SmolLM2's real tokenizer, saved as a
"behaviour-cloned" model dir; the reward model is a real RewardModel on a 2-layer BERT; the corpus
is the paragraphs of a few real HotpotQA records, searched with an in-memory BM25 index."""
from __future__ import annotations

import json
import math
import shutil

import pytest
import torch
from transformers import LlamaForCausalLM

from lm_support import one_thread, smollm2_tokenizer, tiny_llama  # noqa: F401 (fixture)
from citeagent.policies.constrained import Generation
from citeagent.train.ppo import LOG_KEYS, NonFiniteLossError, rollout_stats, train
from citeagent.train.ppo_checkpoint import read_log
from citeagent.train.ppo_config import PPOConfig, find_checkpoint
from citeagent.train.ppo_math import KLController, gae, kl_penalty_rewards, masked_mean, masked_whiten, ppo_losses
from citeagent.train.ppo_model import ActorCritic, command_token_stats, make_actor_critic
from citeagent.train.ppo_rows import Rows, prefix_cache_error

POLICY_OPTIONS = {"guided": False, "system_prompt": "short", "max_observation_tokens": 128, "max_new_tokens": 8,
                  "max_answer_tokens": 12}


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_thread):
    yield


# --- GAE, rewards, losses, KL controller: by hand -------------------------------------------------

# A 4-token trajectory, gamma 1, lambda 0.95. By hand, from the end (the terminal value is 0):
#   d3 = 1.0 + 0 - 0.2 = 0.8                A3 = 0.8
#   d2 = 0.0 + 0.2 - (-0.1) = 0.3           A2 = 0.3 + 0.95 * 0.8 = 1.06
#   d1 = -0.2 + (-0.1) - 0.3 = -0.6         A1 = -0.6 + 0.95 * 1.06 = 0.407
#   d0 = 0.1 + 0.3 - 0.5 = -0.1             A0 = -0.1 + 0.95 * 0.407 = 0.28665
R = [0.1, -0.2, 0.0, 1.0]
V = [0.5, 0.3, -0.1, 0.2]
ADV = [0.28665, 0.407, 1.06, 0.8]
RET = [0.78665, 0.707, 0.96, 1.0]  # A + V


def test_gae_by_hand():
    adv, ret = gae(torch.tensor([R]), torch.tensor([V]), torch.ones(1, 4, dtype=torch.bool), 1.0, 0.95)
    torch.testing.assert_close(adv, torch.tensor([ADV]))
    torch.testing.assert_close(ret, torch.tensor([RET]))
    # gamma 0.5, lambda 1: A_t = sum_k 0.5^k r_{t+k} - V_t (Monte Carlo return minus the value)
    adv, _ = gae(torch.tensor([R]), torch.tensor([V]), torch.ones(1, 4, dtype=torch.bool), 0.5, 1.0)
    mc = [0.1 - 0.1 + 0.0 + 0.125, -0.2 + 0.0 + 0.25, 0.0 + 0.5, 1.0]
    torch.testing.assert_close(adv, torch.tensor([[m - v for m, v in zip(mc, V)]]))


def test_gae_across_steps_and_padding():
    """Two steps of two tokens each, laid out with padding between and after them, next to a
    shorter trajectory: the real tokens get the same advantages as the plain 4-token trajectory
    (the last token of step 1 bootstraps from the first token of step 2), whatever the padding holds."""
    junk = 1e6
    rewards = torch.tensor([[R[0], R[1], junk, junk, R[2], R[3], junk], [2.0, junk, junk, junk, junk, junk, junk]])
    values = torch.tensor([[V[0], V[1], -junk, junk, V[2], V[3], junk], [0.5, junk, junk, junk, junk, junk, junk]])
    mask = torch.tensor([[1, 1, 0, 0, 1, 1, 0], [1, 0, 0, 0, 0, 0, 0]], dtype=torch.bool)
    adv, ret = gae(rewards, values, mask, 1.0, 0.95)
    torch.testing.assert_close(adv[0, mask[0]], torch.tensor(ADV))
    torch.testing.assert_close(ret[0, mask[0]], torch.tensor(RET))
    assert adv[0, ~mask[0]].abs().sum() == 0 and ret[0, ~mask[0]].abs().sum() == 0
    torch.testing.assert_close(adv[1, 0], torch.tensor(1.5))  # one token: r - V, terminal value 0


def test_kl_penalty_rewards_by_hand():
    logp = torch.tensor([[-1.0, -2.0, -0.5, 9.0], [-0.3, -0.7, 9.0, 9.0]])
    ref = torch.tensor([[-1.5, -2.0, -0.25, -9.0], [-0.1, -1.0, -9.0, -9.0]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]], dtype=torch.bool)
    rewards, kl = kl_penalty_rewards(logp, ref, mask, torch.tensor([2.0, -1.0]), kl_coef=0.1)
    # row 0: kl = [0.5, 0, -0.25]; -0.1 * kl = [-0.05, 0, 0.025], + 2.0 on the last real token
    # row 1: kl = [-0.2, 0.3]; -0.1 * kl = [0.02, -0.03], - 1.0 on the last real token
    torch.testing.assert_close(rewards, torch.tensor([[-0.05, 0.0, 2.025, 0.0], [0.02, -1.03, 0.0, 0.0]]))
    torch.testing.assert_close(kl, torch.tensor([[0.5, 0.0, -0.25, 0.0], [-0.2, 0.3, 0.0, 0.0]]))
    rewards, _ = kl_penalty_rewards(logp, ref, mask, torch.tensor([2.0, -1.0]), kl_coef=0.0)
    torch.testing.assert_close(rewards, torch.tensor([[0.0, 0.0, 2.0, 0.0], [0.0, -1.0, 0.0, 0.0]]))


def test_ppo_losses_by_hand():
    ratios = [1.5, 0.7, 1.1]
    old = torch.tensor([-1.0, -2.0, -0.5])
    logp = old + torch.log(torch.tensor(ratios))
    adv = torch.tensor([1.0, 1.0, -2.0])
    values, old_values = torch.tensor([0.5, 0.0, 1.0]), torch.tensor([0.0, 0.0, 0.5])
    returns = torch.tensor([1.0, 1.0, 0.0])
    entropy = torch.tensor([2.0, 3.0, 4.0])
    out = ppo_losses(logp, old, adv, values, old_values, returns, entropy, torch.ones(3, dtype=torch.bool), 0.2, 0.2)
    # policy: max(-A r, -A clip(r)): [max(-1.5, -1.2), max(-0.7, -0.8), max(2.2, 2.2)] = [-1.2, -0.7, 2.2]
    assert out["policy_loss"].item() == pytest.approx((-1.2 - 0.7 + 2.2) / 3, abs=1e-6)
    # value: clipped values [0.2, 0.0, 0.7]; max of squared errors [max(.25, .64), 1, max(1, .49)]
    assert out["value_loss"].item() == pytest.approx(0.5 * (0.64 + 1.0 + 1.0) / 3, abs=1e-6)
    assert out["clip_frac"].item() == pytest.approx(2 / 3)  # |r - 1| > 0.2 for 1.5 and 0.7
    k3 = sum((r - 1) - math.log(r) for r in ratios) / 3
    assert out["approx_kl"].item() == pytest.approx(k3, abs=1e-6)
    assert out["entropy"].item() == pytest.approx(3.0)


def test_masked_positions_never_count():
    """Garbage where the mask is off (observation tokens, padding) changes no loss term."""
    torch.manual_seed(0)
    n = 10
    t = {k: torch.randn(n) for k in ("logp", "old", "adv", "v", "ov", "ret", "ent")}
    mask = torch.tensor([0, 1, 1, 0, 1, 0, 1, 1, 0, 0], dtype=torch.bool)
    base = ppo_losses(t["logp"], t["old"], t["adv"], t["v"], t["ov"], t["ret"], t["ent"], mask)
    bad = {k: torch.where(mask, x, torch.full_like(x, 1e4 if i % 2 else -1e4)) for i, (k, x) in enumerate(t.items())}
    other = ppo_losses(bad["logp"], bad["old"], bad["adv"], bad["v"], bad["ov"], bad["ret"], bad["ent"], mask)
    for k in base:
        torch.testing.assert_close(other[k], base[k])
    sub = ppo_losses(*(x[mask] for x in t.values()), torch.ones(int(mask.sum()), dtype=torch.bool))
    for k in base:
        torch.testing.assert_close(sub[k], base[k])
    assert masked_mean(torch.tensor([1.0, float("nan"), 3.0]), torch.tensor([1, 0, 1])).item() == 2.0
    w = masked_whiten(torch.tensor([1.0, 99.0, 3.0, 5.0]), torch.tensor([1, 0, 1, 1]))
    torch.testing.assert_close(w, torch.tensor([-1.0, 0.0, 0.0, 1.0]) * math.sqrt(3 / 2), atol=1e-4, rtol=0)


def test_adaptive_kl_controller_by_hand():
    c = KLController(0.02, adaptive=True, target=6.0, horizon=100)
    c.update(kl=9.0, n_episodes=10)  # error clip(9/6 - 1) = +0.2: 0.02 * (1 + 0.2 * 10/100)
    assert c.value == pytest.approx(0.0204)
    c.update(kl=6.6, n_episodes=10)  # error 0.1: * 1.01
    assert c.value == pytest.approx(0.0204 * 1.01)
    c.update(kl=0.0, n_episodes=50)  # error -1 clipped to -0.2: * (1 - 0.2 * 0.5)
    assert c.value == pytest.approx(0.0204 * 1.01 * 0.9)
    fixed = KLController(0.02)
    fixed.update(kl=100.0, n_episodes=1000)
    assert fixed.value == 0.02


# --- the model side: rows, per-token statistics --------------------------------------------------

@pytest.fixture(scope="module")
def tokenizer():
    tok = smollm2_tokenizer()
    return tok




def gen(prompt, tokens):
    return Generation(text="", token_ids=tokens, prompt_ids=prompt, logprob=0.0, model_logprob=0.0)


def test_rows_and_token_stats_match_a_direct_computation(tokenizer):
    model = tiny_llama(tokenizer)
    episodes = [[gen([5, 6, 7], [8, 9]), gen([10, 11, 12, 13], [14])], [gen([20, 21], [22, 23, 24])]]
    rows = Rows.build(episodes, pad_id=0)
    assert rows.offsets == [0, 2, 3, 6] and rows.episode_tokens == [3, 3]
    assert rows.command_mask.int().tolist() == [[0, 0, 0, 1, 1], [0, 0, 0, 0, 1], [0, 0, 1, 1, 1]]
    ids, attn, cmd, flat = rows.select([0, 1, 2], "cpu")
    ac = ActorCritic(model)
    torch.nn.init.normal_(ac.value_head.weight)  # a non-zero head, so values are checked too
    with torch.no_grad():
        s = ac(ids, attn, cmd, with_entropy=True)
        # Directly: every row alone, full-vocabulary log_softmax, gathered at its command tokens.
        want_logp, want_ent, want_v = [], [], []
        for row in [[5, 6, 7, 8, 9], [10, 11, 12, 13, 14], [20, 21, 22, 23, 24]]:
            out = model(torch.tensor([row]), output_hidden_states=True)
            logprobs = out.logits[0].log_softmax(-1)
            n_prompt = {5: 3, 10: 4, 20: 2}[row[0]]
            for p in range(n_prompt, len(row)):
                want_logp.append(logprobs[p - 1, row[p]])
                want_ent.append(-(logprobs[p - 1].exp() * logprobs[p - 1]).sum())
                want_v.append(ac.value_head(out.hidden_states[-1][0, p - 1]).squeeze())
    assert len(s.logp) == rows.n_tokens == 6
    torch.testing.assert_close(s.logp, torch.stack(want_logp), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(s.entropy, torch.stack(want_ent), atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(s.values, torch.stack(want_v), atol=1e-5, rtol=1e-5)
    # Right padding (any ids, attention off) and a shuffled batch change nothing.
    wide = torch.cat([ids, torch.randint(0, 49152, (3, 4))], 1)
    wide_attn = torch.cat([attn, torch.zeros(3, 4, dtype=torch.long)], 1)
    wide_cmd = torch.cat([cmd, torch.zeros(3, 4, dtype=torch.bool)], 1)
    with torch.no_grad():
        torch.testing.assert_close(ac(wide, wide_attn, wide_cmd).logp, s.logp, atol=1e-5, rtol=1e-5)
        ids2, attn2, cmd2, flat2 = rows.select([2, 0], "cpu")
        torch.testing.assert_close(ac(ids2, attn2, cmd2).logp, s.logp[flat2], atol=1e-5, rtol=1e-5)
    assert flat2.tolist() == [3, 4, 5, 0, 1]
    padded, mask = rows.pad_episodes(torch.arange(6.0))
    assert padded.tolist() == [[0, 1, 2], [3, 4, 5]] and mask.all()


def test_lora_layers_adapt_only_the_top_layers_and_the_reference_is_the_base(tokenizer):
    lm = tiny_llama(tokenizer)
    ac, reference = make_actor_critic(lm, PPOConfig(lora_layers=1), torch.device("cpu"))
    trainable = [n for n, p in ac.named_parameters() if p.requires_grad]
    adapted = {n.split(".layers.")[1].split(".")[0] for n in trainable if "lora_" in n}
    assert adapted == {"1"} and any("value_head" in n for n in trainable)  # layer 1 of 0-1, plus the head
    assert reference is None  # the reference policy is the model with its adapters switched off
    with pytest.raises(ValueError, match="lora-layers"):
        make_actor_critic(tiny_llama(tokenizer), PPOConfig(lora_layers=3), torch.device("cpu"))


def test_recomputed_logprobs_match_the_decoder(tokenizer):
    """The rows built from a real rollout step line up with what the decoder sampled: the full
    forward pass gives back the decoder's own (unmasked, T=1) log-probs of its tokens."""
    from citeagent.policies.lm import LMPolicy

    policy = LMPolicy(model=tiny_llama(tokenizer), tokenizer=tokenizer, temperature=1.0, **POLICY_OPTIONS)
    obs = ["Question: Who wrote Hamlet?\nQuotes: (none)\nNext action:", "Question: x\nNext action:"]
    info = {"phase": "browse", "valid_commands": ["Search", "End: Decline"], "link_ids": [], "quotable_text": "",
            "quote_numbers": []}
    policy.act_batch(obs, [info, info])
    gens = policy.last_generations
    rows = Rows.build([[g] for g in gens], tokenizer.pad_token_id)
    with torch.no_grad():
        s = command_token_stats(policy.model, None, *rows.select(list(range(len(rows))), "cpu")[:3])
    want = torch.tensor([lp for g in gens for lp in g.token_model_logprobs])
    torch.testing.assert_close(s.logp, want, atol=2e-4, rtol=1e-4)


def _adapted_rows(lm, lora_layers):
    """A LoRA actor-critic whose adapters and value head are not zero (so the policy differs from
    its reference), and rows of two episodes of unequal lengths."""
    ac, reference = make_actor_critic(lm, PPOConfig(lora_layers=lora_layers), torch.device("cpu"))
    torch.manual_seed(1)
    for n, p in ac.named_parameters():
        if "lora_B" in n or "value_head.weight" in n:
            torch.nn.init.normal_(p, std=0.5)
    episodes = [[gen(list(range(5, 40)), [8, 9]), gen(list(range(100, 112)), [14])],
                [gen(list(range(200, 260)), [22, 23, 24])]]
    return ac, reference, Rows.build(episodes, pad_id=0)


def test_frozen_layer_cache_gives_the_full_forwards_numbers_and_gradients(tokenizer):
    """With LoRA on the top layer of two, the bottom layer's output is cached once a row: the old
    and reference log-probs, the values and the update's gradients equal the full forward's."""
    ac, reference, rows = _adapted_rows(tiny_llama(tokenizer), lora_layers=1)
    cfg = PPOConfig(lora_layers=1, minibatch_size=2)
    full = rollout_stats(ac, reference, rows, cfg, "cpu")
    assert not rows.prefix
    cached = rollout_stats(ac, reference, rows, cfg, "cpu", prefix_layer=1)
    assert sorted(rows.prefix) == [0, 1, 2] and rows.prefix_layer == 1
    assert [rows.prefix[r].shape[0] for r in range(3)] == rows.lengths()  # unpadded
    for a, b in zip(full, cached):
        torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-5)
    assert (full[0] - full[2]).abs().max() > 1e-3  # the adapters matter: reference != policy
    # The update's forward on a shuffled minibatch, and its gradients.
    grads = []
    for prefix in (None, rows.prefix_of([2, 0])):
        ac.zero_grad(set_to_none=True)
        ids, attn, cmd, _ = rows.select([2, 0], "cpu")
        s = ac(ids, attn, cmd, prefix=prefix)
        (s.logp.sum() + s.values.sum()).backward()
        grads.append([p.grad.clone() for p in ac.parameters() if p.requires_grad])
    assert all(g is not None for g in grads[1]) and len(grads[0]) == len(grads[1])
    for a, b in zip(*grads):  # rounding: the cached rows were computed in other batches
        assert float((b - a).abs().max()) <= 1e-5 * float(a.abs().max())
    assert prefix_cache_error(ac, rows, 1, cfg, "cpu") < 1e-5


def test_prefix_cache_error_flags_a_decoder_that_cannot_be_split(tokenizer):
    """Granite multiplies its input embeddings inside the decoder's forward, so a forward that
    starts at a cached layer input is wrong for it: the check must see that."""
    from transformers import GraniteConfig, GraniteForCausalLM

    torch.manual_seed(0)
    config = GraniteConfig(vocab_size=49152, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=2, embedding_multiplier=12.0,
                           tie_word_embeddings=True, initializer_range=0.1)
    ac, reference, rows = _adapted_rows(GraniteForCausalLM(config).eval(), lora_layers=1)
    assert prefix_cache_error(ac, rows, 1, PPOConfig(lora_layers=1), "cpu") > 1e-2


# --- configuration --------------------------------------------------------------------------------

def test_invalid_configs_fail_before_anything_loads(tmp_path, monkeypatch, capsys, bc_dir):
    with pytest.raises(ValueError, match="--kl-coef must be >= 0"):
        PPOConfig(kl_coef=-0.01)
    for bad, flag in [({"lam": 1.5}, "--lam"), ({"lr": float("nan")}, "--lr"),
                      ({"episodes_per_iter": 0}, "--episodes-per-iter"), ({"dataset": "squad"}, "--dataset"),
                      ({"stop_approx_kl": -0.1}, "--stop-approx-kl"), ({"combined_reward": "vibes=1"}, "--combined-reward")]:
        with pytest.raises(ValueError, match=flag):
            PPOConfig(**bad)

    import citeagent.models

    loads = []
    monkeypatch.setattr(citeagent.models, "load_policy_model", lambda *a, **k: loads.append(a))
    cfg = PPOConfig(policy=str(bc_dir), reward_model=str(tmp_path / "no-rm"), out=str(tmp_path / "run"))
    with pytest.raises(FileNotFoundError, match="--reward-model .*citeagent train rm"):
        train(cfg)
    with pytest.raises(FileNotFoundError, match="--policy .*citeagent train bc"):
        train(PPOConfig(policy=str(tmp_path / "no-bc"), out=str(tmp_path / "run")))
    assert loads == []
    # The command line: one clear line and exit status 2.
    from citeagent.cli import main

    assert main(["train", "ppo", "--kl-coef", "-1", "--policy", str(bc_dir)]) == 2
    assert "--kl-coef must be >= 0" in capsys.readouterr().err
    assert main(["train", "ppo", "--policy", str(bc_dir), "--reward-model", str(tmp_path / "no-rm"), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "--reward-model" in err and "citeagent train rm" in err and "Traceback" not in err


# --- end to end -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def bc_dir(tmp_path_factory, tokenizer):
    from citeagent.policies.lm import save_policy_options
    from citeagent.train import CPU_BROWSER

    d = tmp_path_factory.mktemp("bc")
    tiny_llama(tokenizer).save_pretrained(d)
    tokenizer.save_pretrained(d)
    save_policy_options(d, policy=POLICY_OPTIONS, browser=dict(CPU_BROWSER))
    return d


@pytest.fixture(scope="module")
def rm_dir(tmp_path_factory):
    from citeagent.reward.model import RewardModel, build_backbone

    model, tok = build_backbone("tiny", seed=0)
    return RewardModel(model, tok, max_length=128).save(tmp_path_factory.mktemp("rm") / "rm")


@pytest.fixture(scope="module")
def world():
    """A few real HotpotQA records and their paragraphs as a small searchable corpus."""
    from citeenv.corpus import Corpus
    from citeenv.index import in_memory_index
    from citeenv.local import LocalBackend
    from citeenv.sources.hotpotqa import paragraph_document, read_hotpotqa_records

    records = list(read_hotpotqa_records(limit=6))
    docs = {}
    for r in records:
        for title, sentences in r["context"]:
            docs.setdefault(title, paragraph_document(title, sentences))
    corpus = Corpus(list(docs.values()), name="tiny-hotpotqa")
    return records, LocalBackend(corpus, in_memory_index(corpus, "bm25"))


def run(world, bc_dir, rm_dir, out, reward_model=None, **kw):
    records, backend = world
    cfg = PPOConfig(policy=str(bc_dir), reward_model=str(rm_dir), out=str(out), episodes_per_iter=4,
                    rollout_batch_size=4, max_actions=4, minibatch_size=4, ppo_epochs=2, **kw)
    return train(cfg, records=records, backend=backend, reward_model=reward_model)


class NaNRewardModel:
    """A broken reward model: every score is NaN."""

    def score_batch(self, questions, answers):
        return [float("nan")] * len(questions)


def test_iterations_checkpoint_resume_and_nan_stop(tmp_path, world, bc_dir, rm_dir):
    from citeagent.policies.lm import LMPolicy, saved_policy_options

    # Two iterations straight through: the reference run.
    straight = tmp_path / "straight"
    final = run(world, bc_dir, rm_dir, straight, iterations=2)
    log = read_log(straight / "log.jsonl")
    assert [x["iteration"] for x in log] == [1, 2] and all(list(x) == list(LOG_KEYS) for x in log)
    first = log[0]
    assert first["kl"] == 0.0  # fresh LoRA adapters: the policy is its reference
    assert first["kl_coef"] == 0.02 and first["tokens"] > 0 and 0 <= first["invalid_rate"] <= 1
    assert first["gold_reward"] is not None and 0 < first["answered_rate"] <= 1
    assert all(math.isfinite(x[k]) for x in log for k in LOG_KEYS if x[k] is not None)
    assert log[1]["kl"] != 0.0  # after an update the policy moved away from its reference
    assert (straight / "log.png").stat().st_size > 0
    # The final model is a plain model dir with the BC dir's options; LoRA is merged into it.
    assert saved_policy_options(final)["policy"] == POLICY_OPTIONS
    policy = LMPolicy(str(final))
    assert policy.config.system_prompt == "short" and not any("lora" in n for n, _ in policy.model.named_parameters())
    before = LlamaForCausalLM.from_pretrained(bc_dir).model.layers[0].self_attn.q_proj.weight
    assert not torch.equal(policy.model.model.layers[0].self_attn.q_proj.weight, before)

    # One iteration, then a kill: a torn line is left after the checkpoint. Resuming redoes
    # iteration 2 exactly as the straight run did it: nothing lost, nothing repeated.
    resumed = tmp_path / "resumed"
    run(world, bc_dir, rm_dir, resumed, iterations=1)
    ckpt = find_checkpoint(resumed)
    assert ckpt.name == "checkpoint" and json.loads((ckpt / "trainer_state.json").read_text())["iteration"] == 1
    assert {"model.safetensors", "optimizer.bin", "random_states_0.pkl"} <= {p.name for p in ckpt.iterdir()}
    nan_run = tmp_path / "nan"
    shutil.copytree(resumed, nan_run)
    shutil.rmtree(nan_run / "final")  # the 1-iteration run finished; the NaN run must not write one
    with (resumed / "log.jsonl").open("a") as f:
        f.write('{"iteration": 2, "reward": 0.')
    with pytest.raises(ValueError, match="--resume"):
        run(world, bc_dir, rm_dir, resumed, iterations=2)  # no silent overwrite of a run
    run(world, bc_dir, rm_dir, resumed, iterations=2, resume=True)
    again = read_log(resumed / "log.jsonl")
    assert [x["iteration"] for x in again] == [1, 2]
    assert again[0] == log[0] | {"seconds": again[0]["seconds"]}
    assert again[1] == log[1] | {"seconds": again[1]["seconds"]}

    # A NaN reward makes the loss NaN in iteration 2: the run stops, the checkpoint of iteration 1
    # is untouched and the log has no line for the failed iteration.
    saved = {p.name: p.read_bytes() for p in (nan_run / "checkpoint").iterdir()}
    with pytest.raises(NonFiniteLossError, match="iteration 2.*not finite.*iteration 1\\) is kept"):
        run(world, bc_dir, rm_dir, nan_run, iterations=2, resume=True, reward_model=NaNRewardModel())
    assert {p.name: p.read_bytes() for p in (nan_run / "checkpoint").iterdir()} == saved
    assert [x["iteration"] for x in read_log(nan_run / "log.jsonl")] == [1]
    assert not (nan_run / "final").exists()


def test_stop_approx_kl_ends_the_update_after_the_epoch_that_passes_it(tmp_path, world, bc_dir, rm_dir):
    """After its first optimizer step the policy differs from the one that sampled the rows, so the
    first epoch's mean approx KL is above 0: a threshold of 0 stops after one epoch, a huge one
    never stops, and the log says how many epochs ran."""
    run(world, bc_dir, rm_dir, tmp_path / "stop", iterations=1, stop_approx_kl=0.0)
    stopped = read_log(tmp_path / "stop" / "log.jsonl")[0]
    assert stopped["epochs"] == 1 and stopped["approx_kl"] > 0
    run(world, bc_dir, rm_dir, tmp_path / "go", iterations=1, stop_approx_kl=1e9)
    assert read_log(tmp_path / "go" / "log.jsonl")[0]["epochs"] == 2


def test_a_run_with_the_frozen_layer_cache_matches_one_without(tmp_path, world, bc_dir, rm_dir, capsys):
    """LoRA on the top layer: the run caches the bottom layer's output and says so; its log and
    final weights equal those of the same run with --no-cache-frozen-layers."""
    finals = {}
    for cache in (True, False):
        finals[cache] = run(world, bc_dir, rm_dir, tmp_path / str(cache), iterations=1, lora_layers=1,
                            cache_frozen_layers=cache)
        err = capsys.readouterr().err
        assert ("frozen-layer cache: the bottom 1 layers" in err) == cache
    on, off = (read_log(tmp_path / str(c) / "log.jsonl")[0] for c in (True, False))
    for k in ("reward", "kl", "value_loss", "policy_loss", "entropy", "clip_frac", "approx_kl", "tokens"):
        assert on[k] == pytest.approx(off[k], rel=1e-4, abs=1e-6), k
    a, b = (LlamaForCausalLM.from_pretrained(finals[c]).state_dict() for c in (True, False))
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-5


def test_bench_script_measures_the_update_and_the_frozen_layer_cache(tmp_path):
    """scripts/bench_ppo.py on a 2-layer model: the JSON has every measurement it promises, from
    the same rows (timings are the script's output, not asserted here)."""
    import subprocess
    import sys

    out = tmp_path / "bench.json"
    r = subprocess.run([sys.executable, "scripts/bench_ppo.py", "--model", "tiny", "--episodes", "4", "--max-actions",
                        "3", "--lora-layers", "1", "--threads", "1", "--repeats", "1", "--out", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result == json.loads(r.stdout)
    assert [result["rollout"][b]["episodes"] for b in ("batch_1", "batch_8")] == [4, 4]
    update = result["update"]
    assert update["rows"] >= 4 and update["tokens"] > update["command_tokens"] > 0
    assert all(update[f"{k}_seconds"] > 0 for k in ("ppo", "plain", "plain_full_logits", "ppo_cached"))
    cache = update["frozen_layer_cache"]
    assert cache["cached_layers"] == 1 and cache["ppo_epochs"] == 2
    assert cache["stats_speedup"] == pytest.approx(cache["stats_seconds"] / cache["stats_cached_seconds"], rel=0.02)
    assert cache["update_speedup"] == pytest.approx(update["ppo_seconds"] / update["ppo_cached_seconds"], rel=0.02)
    assert result["goal"]["met"] == (update["loop_overhead"] < 0.25)
