"""The extractive answer reader (citeagent/policies/reader.py) and its trainer
(citeagent/train/reader.py): span decoding back to exact quote text, candidates, the artifact's
save/load and its errors, training data labels, a real training run of a tiny BERT built from
config, and the shipped artifact on the real MiniLM."""
import json
import math
import re

import pytest
import torch
from transformers import BertConfig, BertModel

from citeagent.eval.answer_metrics import normalize_answer
from citeagent.policies.reader import (ARTIFACT_DIR, META_FILE, WEIGHTS_FILE, AnswerCandidate, Reader, ReaderError,
                                       ReaderModel, ReaderSettings, best_spans, context_mask, encode_windows,
                                       format_answer, load_reader, load_tokenizer, lora_encoder, model_inputs,
                                       save_reader)
from citeagent.train.reader import ReaderConfig, question_examples, train_reader, window_labels

ARTHUR = "Arthur's Magazine (1844–1846) was an American literary periodical published in Philadelphia."
FIRST = "First for Women is a woman's magazine published by Bauer Media Group in the USA, started in 1989."
QUESTION = "Which magazine was started first, Arthur's Magazine or First for Women?"


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(ReaderSettings())  # MiniLM's tokenizer files; no weights are read


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory, tokenizer):
    """A 2-layer random BERT over MiniLM's vocabulary, saved where a reader's settings can name it."""
    torch.manual_seed(0)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=256)
    path = tmp_path_factory.mktemp("tiny-bert")
    BertModel(config, add_pooling_layer=False).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def tiny_settings(base, **kw) -> ReaderSettings:
    return ReaderSettings(base_model=str(base), lora_layers=1, **kw)


def random_lora(model: ReaderModel, seed: int = 1) -> ReaderModel:
    """Non-zero LoRA deltas (a fresh LoRA B is zero, so it would change nothing)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    return model


@pytest.fixture(scope="module")
def tiny_artifact(tmp_path_factory, tiny_base):
    torch.manual_seed(0)
    settings = tiny_settings(tiny_base)
    out = tmp_path_factory.mktemp("tiny-reader")
    save_reader(random_lora(ReaderModel(lora_encoder(settings))), settings, out, {"validation": {}})
    return out


@pytest.fixture(scope="module")
def tiny_reader(tiny_artifact):
    torch.set_num_threads(1)
    return Reader.load(tiny_artifact)


def token_index(tokenizer, enc, row: int, piece: str) -> int:
    """The position of the quote token `piece` in window `row`."""
    tokens = tokenizer.convert_ids_to_tokens(enc["input_ids"][row])
    return next(i for i, (t, sid) in enumerate(zip(tokens, enc.sequence_ids(row))) if sid == 1 and t == piece)


# --- span decoding ---------------------------------------------------------------------------

def spans_for(tokenizer, question, text, start_piece, end_piece, settings=ReaderSettings()):
    enc = encode_windows(tokenizer, [question], [text], settings)
    n = enc["input_ids"].shape[1]
    start, end = [-50.0] * n, [-50.0] * n
    start[token_index(tokenizer, enc, 0, start_piece)] = 0.0
    end[token_index(tokenizer, enc, 0, end_piece)] = 0.0
    return best_spans(start, end, enc["offset_mapping"][0].tolist(), context_mask(enc)[0].tolist(), text,
                      settings.max_span_tokens, settings.top_n)


def test_a_span_maps_back_to_the_exact_quote_substring(tokenizer):
    spans = spans_for(tokenizer, QUESTION, ARTHUR, "arthur", "magazine")
    assert max(spans)[1] == "Arthur's Magazine" == ARTHUR[0:17]
    # an en dash inside the span, and the years around it, come back as written
    spans = spans_for(tokenizer, QUESTION, ARTHUR, "1844", "1846")
    assert max(spans)[1] == "1844–1846" == ARTHUR[19:28]


def test_accents_and_case_the_uncased_tokenizer_drops_come_back_verbatim(tokenizer):
    text = "The play Café Müller was staged by Pina Bausch."
    spans = spans_for(tokenizer, "Which play?", text, "cafe", "muller")
    assert max(spans)[1] == "Café Müller"


def test_spans_start_and_end_on_word_boundaries(tokenizer):
    text = "It is served with knedlíky (bread dumplings) in Arthur's town."
    assert max(spans_for(tokenizer, "How?", text, "bread", "##lings"))[1] == "bread dumplings"
    inside_words = spans_for(tokenizer, "How?", text, "##lings", "s")  # "lings" of dumplings, "s" of Arthur's
    texts = [t for _, t in inside_words]
    assert texts and "lings" not in texts and "s" not in texts
    for t in texts:  # some occurrence of each is a whole run of words
        assert re.search(r"(?<![\w'])" + re.escape(t) + r"(?!\w)", text), t


def test_spans_start_and_end_inside_the_quote_and_respect_the_length_limit(tokenizer):
    settings = ReaderSettings(max_span_tokens=3)
    enc = encode_windows(tokenizer, [QUESTION], [ARTHUR], settings)
    n = enc["input_ids"].shape[1]
    start, end = [0.0] * n, [0.0] * n  # every position equally likely, question tokens included
    in_quote = context_mask(enc)[0].tolist()
    spans = best_spans(start, end, enc["offset_mapping"][0].tolist(), in_quote, ARTHUR, 3, top_n=n)
    assert spans
    assert all(text in ARTHUR for _, text in spans)
    assert not any("Which" in text or "First for" in text for _, text in spans)  # the question's words
    assert all(len(tokenizer(text, add_special_tokens=False)["input_ids"]) <= 3 for _, text in spans)


# --- candidates ------------------------------------------------------------------------------

def quotes(*texts):
    return [{"n": i + 1, "title": f"t{i}", "url": f"https://example.org/{i}", "text": t} for i, t in enumerate(texts)]


def test_candidates_are_ranked_log_scores_of_verbatim_spans(tiny_reader):
    cands = tiny_reader.candidates(QUESTION, quotes(ARTHUR, FIRST), k=30)
    assert 3 <= len(cands) <= 30
    assert [c.score for c in cands] == sorted((c.score for c in cands), reverse=True)
    assert all(c.score <= 0 and math.isfinite(c.score) for c in cands)
    texts = {1: ARTHUR, 2: FIRST}
    for c in cands:
        if c.kind == "span":
            assert c.cites and all(c.text in texts[n] for n in c.cites)  # within a quote, never across two
    assert len(tiny_reader.candidates(QUESTION, quotes(ARTHUR, FIRST), k=2)) == 2


def test_the_same_answer_in_two_quotes_is_one_candidate_citing_both(tiny_reader):
    cands = tiny_reader.candidates(QUESTION, quotes(ARTHUR, ARTHUR), k=50)
    keys = [normalize_answer(c.text) for c in cands]
    assert len(keys) == len(set(keys))
    assert all(c.cites == [1, 2] for c in cands)


def test_yes_and_no_cite_every_quote(tiny_reader):
    qs = quotes(ARTHUR, FIRST, "Both are magazines.")
    qs[2]["n"] = 7
    cands = tiny_reader.candidates("Are both magazines?", qs, k=200)
    yes_no = [c for c in cands if c.kind in ("yes", "no")]
    assert sorted(c.text for c in yes_no) == ["no", "yes"]
    assert all(c.cites == [1, 2, 7] for c in yes_no)


def test_a_batch_gives_what_each_episode_gets_alone(tiny_reader):
    episodes = [(QUESTION, quotes(ARTHUR, FIRST)), ("Who publishes First for Women?", quotes(FIRST)),
                ("When?", quotes("It happened in 1989."))]
    batched = tiny_reader.candidates_batch(episodes, k=5)
    for (question, qs), got in zip(episodes, batched):
        alone = tiny_reader.candidates(question, qs, k=5)
        assert [(c.text, c.cites, c.kind) for c in got] == [(c.text, c.cites, c.kind) for c in alone]
        assert [c.score for c in got] == pytest.approx([c.score for c in alone], abs=1e-4)


def test_a_long_quote_is_read_in_bounded_windows(tiny_artifact, tiny_reader):
    long = " ".join(f"Sentence {i} names Arthur's Magazine." for i in range(20000))  # ~700 kB of web text
    cands = tiny_reader.candidates(QUESTION, quotes(long), k=10)
    assert cands and all(c.text in long for c in cands if c.kind == "span")
    s = tiny_reader.settings
    assert len(tiny_reader._bounded_text(long)) <= s.max_windows * s.max_length * 8


def test_format_answer_cites_with_browser_markers():
    assert format_answer(AnswerCandidate("Arthur's Magazine", -0.1, [1, 2], "span")) == "Arthur's Magazine [1][2]"
    assert format_answer(AnswerCandidate("yes", -0.5, [3], "yes")) == "yes [3]"


def test_no_quotes_no_candidates_and_bad_input_is_named(tiny_reader):
    assert tiny_reader.candidates(QUESTION, []) == []
    assert tiny_reader.candidates(QUESTION, quotes("   ")) == []
    with pytest.raises(ValueError, match="question is empty"):
        tiny_reader.candidates("  ", quotes(ARTHUR))
    with pytest.raises(ValueError, match="'text' must be"):
        tiny_reader.candidates(QUESTION, [{"n": 1}])
    with pytest.raises(ValueError, match="two quotes are numbered 1"):
        tiny_reader.candidates(QUESTION, [{"n": 1, "text": "a"}, {"n": 1, "text": "b"}])
    with pytest.raises(ValueError, match="k must be"):
        tiny_reader.candidates(QUESTION, quotes(ARTHUR), k=0)


def test_training_runs_the_encoder_in_two_parts_that_equal_the_whole(tiny_base, tokenizer):
    settings = tiny_settings(tiny_base)
    model = random_lora(ReaderModel(lora_encoder(settings))).eval()
    enc = encode_windows(tokenizer, [QUESTION, "Who?"], [ARTHUR, FIRST], settings)
    with torch.no_grad():
        whole = model(**model_inputs(enc))
        below = model.layer_states(**model_inputs(enc), upto=1)
        parts = model.heads(model.run_layers(below, enc["attention_mask"], 1))
    for a, b in zip(whole, parts):
        assert torch.allclose(a, b, atol=1e-5)


# --- the artifact ----------------------------------------------------------------------------

def test_a_missing_artifact_names_the_file_and_the_rebuild_command(tmp_path):
    with pytest.raises(ReaderError, match=f"{META_FILE}.*missing.*citeagent train reader"):
        Reader.load(tmp_path / "nowhere")


@pytest.mark.parametrize("damage, match", [
    (lambda d: (d / WEIGHTS_FILE).write_bytes((d / WEIGHTS_FILE).read_bytes()[:200]), "not a readable safetensors"),
    (lambda d: (d / WEIGHTS_FILE).unlink(), "weights are missing"),
    (lambda d: (d / META_FILE).write_text("{not json"), "not readable JSON"),
    (lambda d: (d / META_FILE).write_text(json.dumps({"format": 1, "settings": json.loads(
        (d / META_FILE).read_text())["settings"] | {"lora_r": 4}})), "do not match the settings|do not fit"),
    (lambda d: (d / META_FILE).write_text(json.dumps({"format": 1, "settings": {"colour": 3}})), "unknown settings"),
])
def test_a_corrupt_artifact_is_refused_with_a_clear_error(tmp_path, tiny_artifact, damage, match):
    import shutil

    broken = tmp_path / "reader"
    shutil.copytree(tiny_artifact, broken)
    damage(broken)
    with pytest.raises(ReaderError, match=match) as err:
        Reader.load(broken)
    assert "citeagent train reader" in str(err.value) and str(broken) in str(err.value)


# --- training --------------------------------------------------------------------------------

def record(question, answer, facts, context, _id="q"):
    return {"_id": _id, "question": question, "answer": answer, "type": "comparison", "level": "easy",
            "supporting_facts": facts, "context": context}


CONTEXT = [["Arthur's Magazine", [ARTHUR, "It was edited by T.S. Arthur.", "It merged into Godey's."]],
           ["First for Women", [FIRST, "Its editor is Carrie Krueger."]]]


def test_training_examples_label_the_first_case_insensitive_occurrence(tokenizer):
    import random

    rec = record(QUESTION, "arthur's magazine", [["Arthur's Magazine", 0], ["First for Women", 0]], CONTEXT)
    examples = question_examples(rec, distractors=2, rng=random.Random(0))
    assert len(examples) == 4
    gold, other, *distractors = examples
    assert ARTHUR[gold["start"]:gold["end"]] == "Arthur's Magazine" and gold["type"] == 0
    assert other["start"] is None  # FIRST does not hold the answer: "no answer here"
    assert all(d["start"] is None and d["text"] not in (ARTHUR, FIRST) for d in distractors)
    # the token labels point at exactly the answer's characters
    enc = encode_windows(tokenizer, [e["question"] for e in examples], [e["text"] for e in examples], ReaderSettings())
    starts, ends, types = window_labels(enc, examples)
    offsets = enc["offset_mapping"][0].tolist()
    assert ARTHUR[offsets[starts[0]][0]:offsets[ends[0]][1]] == "Arthur's Magazine"
    assert starts[1:].tolist() == [0, 0, 0] and ends[1:].tolist() == [0, 0, 0]

    yes = question_examples(record("Are both magazines?", "yes", [["Arthur's Magazine", 0]], CONTEXT),
                            distractors=0, rng=random.Random(0))
    assert [(e["type"], e["start"]) for e in yes] == [(1, None)]


def write_records(path, n):
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            rec = record(f"Which magazine was started first, number {i}?", "Arthur's Magazine",
                         [["Arthur's Magazine", 0], ["First for Women", 0]], CONTEXT, _id=f"q{i}")
            f.write(json.dumps(rec) + "\n")


def test_train_reader_saves_an_artifact_that_loads_and_answers(tmp_path, tiny_base):
    data = tmp_path / "hotpot.jsonl"
    write_records(data, 20)  # 6 held out (the first 30%), 14 training questions
    out = tmp_path / "reader"
    config = ReaderConfig(out=str(out), base_model=str(tiny_base), data=str(data), lora_layers=1, epochs=4,
                          batch_size=4, lr=3e-3, valid_fraction=0.3, max_length=96, stride=24)
    result = train_reader(config)
    meta = json.loads((out / META_FILE).read_text())
    assert meta["settings"]["base_model"] == str(tiny_base)
    assert meta["training"]["questions"] + result["validation"]["questions"] == 14
    assert len(meta["training"]["data_sha256"]) == 64
    assert meta["training"]["final_loss"] < meta["training"]["first_loss"]
    reader = Reader.load(out)
    assert reader.candidates(QUESTION, quotes(ARTHUR, FIRST))


def test_the_cli_trains_and_refuses_a_bad_config(tmp_path, tiny_base, capsys):
    from citeagent.cli import main

    data = tmp_path / "hotpot.jsonl"
    write_records(data, 6)
    out = tmp_path / "cli-reader"
    assert main(["train", "reader", "--out", str(out), "--base_model", str(tiny_base), "--data", str(data),
                 "--lora_layers", "1", "--epochs", "1", "--valid_fraction", "0"]) == 0
    assert (out / WEIGHTS_FILE).is_file()
    assert main(["train", "reader", "--out", str(out), "--epochs", "0"]) == 2
    assert "--epochs must be at least 1" in capsys.readouterr().err


# --- the shipped artifact on the real MiniLM -----------------------------------------------

def test_the_shipped_reader_answers_a_comparison_question():
    torch.set_num_threads(1)
    reader = Reader.load()  # citeagent/artifacts/reader on the bundled MiniLM
    assert (ARTIFACT_DIR / WEIGHTS_FILE).stat().st_size < 3_000_000
    cands = reader.candidates(QUESTION, quotes(ARTHUR, FIRST), k=8)
    spans = [c for c in cands if c.kind == "span"]
    assert any(normalize_answer(c.text) == "arthurs magazine" and c.cites == [1] for c in spans)
    assert "Arthur's Magazine [1]" in [format_answer(c) for c in cands]


def test_cross_fitted_reader_reads_each_question_with_the_fold_that_did_not_learn_it(tmp_path, tiny_base, tiny_artifact):
    from citeagent.policies.reader import CROSSFIT_FILE, CrossFitReader, ReaderError
    from citeagent.train.reader import fold_of, train_crossfit

    data = tmp_path / "hotpot.jsonl"
    write_records(data, 20)  # the first 6 are the held-out questions; 14 training questions
    out = tmp_path / "crossfit"
    config = ReaderConfig(out=str(out), base_model=str(tiny_base), data=str(data), lora_layers=1, epochs=1,
                          batch_size=4, max_length=96, stride=24, folds=2, full=str(tiny_artifact))
    result = train_crossfit(config)
    assert sorted(result["folds"]) == [0, 1] and (out / CROSSFIT_FILE).is_file()
    held = [set(json.loads((out / f"fold{k}" / META_FILE).read_text())["held_out_questions"]) for k in (0, 1)]
    records = [json.loads(line) for line in data.read_text().splitlines()][6:]
    assert held[0] | held[1] == {r["question"] for r in records} and not held[0] & held[1]
    assert all(r["question"] in held[fold_of(r, 2)] for r in records)
    # each fold reader learnt only the other fold's questions
    for k in (0, 1):
        assert json.loads((out / f"fold{k}" / META_FILE).read_text())["training"]["questions"] == len(held[1 - k])

    reader = Reader.load(out)
    assert isinstance(reader, CrossFitReader)
    fold0, fold1, full = Reader.load(out / "fold0"), Reader.load(out / "fold1"), Reader.load(tiny_artifact)
    q0, q1 = sorted(held[0])[0], sorted(held[1])[0]
    episodes = [(q1, quotes(ARTHUR, FIRST)), (QUESTION, quotes(FIRST, ARTHUR)), (q0, quotes(ARTHUR, FIRST))]

    def same(a, b):
        return [(c.text, round(c.score, 5)) for c in a] == [(c.text, round(c.score, 5)) for c in b]

    got = reader.candidates_batch(episodes, k=5)
    assert same(got[0], fold1.candidates(*episodes[0], k=5))
    assert same(got[1], full.candidates(*episodes[1], k=5))  # a question in no fold: the full reader
    assert same(got[2], fold0.candidates(*episodes[2], k=5))
    assert not same(got[0], full.candidates(*episodes[0], k=5))  # the routing is what makes them equal
    # the browser collapses a question's whitespace; it still goes to its fold
    spaced = reader.candidates(" " + q1.replace(" ", "  ") + "\n", quotes(ARTHUR, FIRST), k=5)
    assert same(spaced, fold1.candidates(" " + q1.replace(" ", "  ") + "\n", quotes(ARTHUR, FIRST), k=5))

    # a missing fold, or a broken index, is named with the command that makes it
    import shutil

    shutil.rmtree(out / "fold1")
    with pytest.raises(ReaderError, match="fold 1 .* missing.*--folds 2 --fold 1"):
        Reader.load(out)
    (out / CROSSFIT_FILE).write_text("{not json")
    with pytest.raises(ReaderError, match="unreadable cross-fitted reader index"):
        Reader.load(out)


def test_fold_options_are_checked(tmp_path):
    for kw, message in [({"folds": 1}, "--folds must be 0"), ({"folds": 3, "fold": 3}, "--fold must be -1"),
                        ({"folds": 2, "full": str(tmp_path)}, "--full")]:
        with pytest.raises(ValueError, match=message):
            ReaderConfig(out=str(tmp_path / "r"), **kw).check()
