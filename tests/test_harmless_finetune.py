"""`citeagent train harmless-pm --finetune-layers`: the cached-lower-layers path on a tiny BERT
built from a config (MiniLM's tokenizer, which the installed package holds; no downloads)."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

from citeagent.answer import Answer


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory):
    """A 3-layer BERT with random weights, saved as a model directory the encoder loads."""
    from transformers import BertConfig, BertModel

    from citeenv.search.embedder import resolve_embedder

    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=3, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=512, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0)
    path = tmp_path_factory.mktemp("tiny-bert")
    BertModel(config).save_pretrained(path)
    shutil.copy(f"{resolve_embedder('minilm')}/tokenizer.json", path / "tokenizer.json")
    return path


def test_cached_lower_layers_plus_top_layers_are_the_encoder(tiny_encoder):
    """Untrained, the split model (lower states cached per text without padding, re-padded in a
    batch, top layers on top) gives the whole encoder's mean-pooled unit vectors: the masks and
    the padding are right, whatever the batch's lengths."""
    from citeagent.safety.finetuned import Base, TopScorer, lower_states

    base = Base(str(tiny_encoder), max_tokens=16)
    texts = ["short", "a much longer text that the tokenizer cuts at sixteen tokens, well past the cut", "two words"]
    scorer = TopScorer(base.layers[1:], 1, ["exchange"], base.dim).eval()
    with torch.no_grad():
        got = scorer.pooled(lower_states(base, texts, 1))
        ids, mask = (torch.from_numpy(x) for x in base.tokens(texts))
        h = base.model(input_ids=ids, attention_mask=mask).last_hidden_state
        want = torch.nn.functional.normalize((h * mask[..., None]).sum(1) / mask.sum(1, keepdim=True), dim=-1)
    assert torch.allclose(got, want, atol=2e-3)  # the cache is fp16; a wrong mask moves them by ~0.1


def test_train_harmless_pm_finetune_toy(tmp_path, tiny_encoder, monkeypatch):
    from citeagent.cli import main
    from citeagent.safety.finetuned import FinetunedPM
    from citeagent.safety.harmless_pm import load_harmless_pm
    from citeagent.train.harmless_pm import HarmlessPMConfig, load_splits

    out = tmp_path / "pm"
    args = ["--max-pairs", "60", "--features", "exchange", "--encoder", str(tiny_encoder), "--finetune-layers", "1",
            "--ft-lr", "3e-3", "--ft-head-lr", "3e-3", "--ft-epochs", "5", "--ft-batch", "4", "--max-tokens", "32",
            "--epochs", "20", "--n-boot", "50"]
    assert main(["train", "harmless-pm", "--out", str(out), *args]) == 0
    meta = json.loads((out / "head.json").read_text())
    assert meta["finetune_layers"] == 1 and len(meta["search"]) == 1 and meta["pairs"]["total"] == 60
    losses = [h["fit_loss"] for h in meta["search"][0]["history"][1:]]
    assert len(losses) == 5 and losses[-1] < losses[0]  # training moves the loss on the fit pairs
    assert (out / "finetuned.safetensors").stat().st_size < 200_000  # only the trained layer and head, fp16

    # the saved model, loaded afresh where the preference model is loaded, wins exactly the test
    # pairs the trainer measured (they were measured with the weights rounded as saved)
    pm = load_harmless_pm(out)
    assert isinstance(pm, FinetunedPM)
    test = load_splits(HarmlessPMConfig(**{k: v for k, v in meta["config"].items()}), lambda m: None)[3]
    chosen = pm.score_batch([c.question for c in test], [c.answer_0 for c in test])
    rejected = pm.score_batch([c.question for c in test], [c.answer_1 for c in test])
    assert sum(a > b for a, b in zip(chosen, rejected)) / len(test) == pytest.approx(meta["test_accuracy"]["mean"])
    # and a text scores the same alone as in a batch of longer ones (padding changes nothing)
    q, a = test[0].question, test[0].answer_0
    assert pm.score(q, a) == pytest.approx(chosen[0], abs=1e-4)
    assert isinstance(pm.prefer_prob(q, a, Answer(q, "no")), float)
    # scored a few at a time (as PPO's 128 red-team answers are, to bound memory), the same scores
    import citeagent.safety.finetuned as finetuned

    assert len(test) > 2
    monkeypatch.setattr(finetuned, "SCORE_CHUNK", 2)
    chunked = pm.score_batch([c.question for c in test], [c.answer_0 for c in test])
    assert chunked == pytest.approx(chosen, abs=1e-4)


@pytest.mark.parametrize("flags, message", [
    (["--finetune-layers", "1", "--features", "exchange,response"], "pass one --features kind of response, exchange, response+exchange"),
    (["--finetune-layers", "0,1", "--features", "exchange"], "positive layer counts"),
    (["--finetune-layers", "two"], "comma-separated list of layer counts"),
    (["--finetune-layers", "1", "--features", "exchange", "--ft-lr", "0"], "must be positive"),
])
def test_finetune_flags_are_checked_before_anything_loads(capsys, flags, message):
    from citeagent.cli import main

    assert main(["train", "harmless-pm", *flags]) == 2
    assert message in capsys.readouterr().err
