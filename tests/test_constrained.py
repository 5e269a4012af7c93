"""Grammar-constrained decoding with SmolLM2's real tokenizer and a tiny random model built from config.

A random model puts mass on every kind of token (newlines, brackets, byte pieces), so sampling
from it under many seeds is a good fuzzer of the grammar: whatever it writes must parse."""
import re
from dataclasses import replace

import pytest
import torch

from citeagent.policies.constrained import (
    COMMANDS,
    LINE_LIMIT,
    Line,
    CommandGrammar,
    DecodeConfig,
    TokenIndex,
    generate,
    vocab_bytes,
)
from citeenv.commands import Command, parse_command
from citeenv.documents import normalize_ws
from lm_support import one_thread, smollm2_tokenizer, tiny_llama  # noqa: F401 (fixture)

PAGE = (
    "json.dumps(obj) serializes obj to a JSON formatted str using this conversion table. "
    "If skipkeys is true, dict keys that are not basic types are skipped instead of raising a TypeError. "
    "Le café coûte 3 € — très cher. 中文 text too.   Extra   spaces\tand\nnewlines are normalised. "
    "A ━ separator must never be copied. The end."
)
BROWSE = {"phase": "browse", "valid_commands": list(COMMANDS), "link_ids": [0, 7, 12],
          "quotable_text": normalize_ws(PAGE), "quote_numbers": [1, 3]}
INFOS = [
    BROWSE,
    dict(BROWSE, valid_commands=["Quote:"]),
    dict(BROWSE, valid_commands=["Clicked on link", "Scrolled down", "Scrolled up"]),
    dict(BROWSE, valid_commands=["Search", "Find in page:"]),
    {"phase": "browse", "valid_commands": ["Search", "End: Answer", "End: Decline"], "link_ids": [],
     "quotable_text": "", "quote_numbers": []},
    {"phase": "answer", "valid_commands": [], "link_ids": [], "quotable_text": "", "quote_numbers": [1, 3, 12]},
    {"phase": "answer", "valid_commands": [], "link_ids": [], "quotable_text": "", "quote_numbers": []},
]
PROMPTS = ["Question: what does json.dumps return?\nNext action:", "Hi", "The answer is",
           "Quote: the", "Search", "[1] says", "Write the answer.\nAnswer:"]


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_thread):
    yield


@pytest.fixture(scope="module")
def tokenizer():
    tok = smollm2_tokenizer()
    tok.padding_side = "left"
    return tok


@pytest.fixture(scope="module")
def index(tokenizer):
    return TokenIndex.for_tokenizer(tokenizer, 49152, [tokenizer.eos_token_id])


@pytest.fixture(scope="module")
def tiny_model(tokenizer):
    return tiny_llama(tokenizer, max_positions=512)


def check_action(text: str, info: dict) -> None:
    """The assertions every generated action must pass, per docs/ENV_SPEC.md."""
    assert "\n" not in text
    if info["phase"] == "answer":
        assert text.strip(), "empty answer"
        # every [ opens a marker naming an existing quote
        assert text.count("[") == len(re.findall(r"\[\d+\]", text)), text
        assert {int(m) for m in re.findall(r"\[(\d+)\]", text)} <= set(info["quote_numbers"]), text
        return
    cmd = parse_command(text)
    assert isinstance(cmd, Command), f"{text!r}: {cmd}"
    assert cmd.kind in info["valid_commands"], text
    assert text.rstrip() == str(cmd) or cmd.kind == "Quote:", f"{text!r} is not in canonical form"
    if cmd.kind == "Clicked on link":
        assert cmd.number in info["link_ids"]
    if cmd.kind in ("Scrolled down", "Scrolled up"):
        assert cmd.arg in ("1", "2", "3")
    if cmd.kind == "Quote:":
        quote = text[len("Quote: "):]
        page = info["quotable_text"]
        at = page.find(quote)
        assert at >= 0, f"{quote!r} is not verbatim in the page"
        assert "\u2501" not in quote
        starts = [m.start() for m in re.finditer(r"(?:(?<= )|^)\S", page)]
        assert any(page.startswith(quote, s) for s in starts), f"{quote!r} does not start at a word"
    if cmd.kind in ("Search", "Find in page:"):
        assert len(cmd.arg) <= LINE_LIMIT and not text[len(cmd.kind) + 1:].startswith(" ")


# --- the vocabulary and the trie ---------------------------------------------------------------


def test_vocab_bytes_spell_what_the_tokenizer_encodes(tokenizer, index):
    text = "Quote: Le café coûte 3 € — très cher.\n\tx = [1, 2]  # 中文"
    ids = tokenizer(text, add_special_tokens=False).input_ids
    assert b"".join(index.tokens[i] for i in ids) == text.encode()
    assert index.tokens[tokenizer.eos_token_id] is None  # special tokens are never grammar text


def test_sentencepiece_style_vocab():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, "<0x0A>": 3, "<0xC3>": 4, "▁Search": 5, "▁the": 6, "S": 7, "é": 8}
    tk = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>", byte_fallback=True))
    tk.pre_tokenizer = pre_tokenizers.Metaspace()
    tk.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>", bos_token="<s>", eos_token="</s>")
    out = vocab_bytes(tok)
    assert out[:3] == [None, None, None]
    assert out[3:] == [b"\n", b"\xc3", b" Search", b" the", b"S", "é".encode()]


def sample_states(g: CommandGrammar) -> list[tuple]:
    start = g.initial()
    prefixes = [b"", b"S", b"Scr", b"Scrolled ", b"End: ", b"Search", b"Search ", b"Search json",
                b"Clicked on link ", b"Clicked on link 1", b"Quote:", b"Quote: ", b"Quote: If skip",
                b"Quote: Le caf\xc3", b"Quote: Le caf\xc3\xa9", b"Find in page: x \xe2\x82", b"Top"]
    states = [s for s in (g.run(start, p) for p in prefixes) if s is not None]
    states.append(Line("line", 0, LINE_LIMIT - 3, 0))  # near the length limit the mask cannot be used
    return states


def info_id(info: dict) -> str:
    return f'{info["phase"]}-{len(info["valid_commands"])}cmds-quotes{info["quote_numbers"]}'


@pytest.mark.parametrize("info", [BROWSE, INFOS[2], INFOS[4], INFOS[5], INFOS[6]], ids=info_id)
def test_trie_walk_equals_brute_force(index, info):
    g = CommandGrammar(info)
    states = sample_states(g) if info["phase"] == "browse" else [
        g.initial(), g.run(g.initial(), b"It is "), g.run(g.initial(), b"It is \xe4\xb8"),
    ] + ([g.run(g.initial(), b"It [1"), g.run(g.initial(), b"x [1")] if info["quote_numbers"] else [])
    assert len(states) >= 3 and all(s is not None for s in states)
    for s in states:
        got = index.allowed(g, s).id_list()
        assert got == index.brute_force(g, s), s[:3]
        assert got, f"no token allowed in {s[:3]}"


@pytest.mark.parametrize("info", INFOS, ids=info_id)
def test_no_allowed_token_leads_to_a_dead_end(index, info):
    """After any allowed token the command can still be finished: the decoder never gets stuck."""
    g = CommandGrammar(info)
    states = sample_states(g) if info["phase"] == "browse" else [g.initial(), g.run(g.initial(), b"It ")]
    rng = torch.Generator().manual_seed(0)
    for s in states:
        ids = index.allowed(g, s).id_list()
        tricky = [t for t in ids if any(c in (index.tokens[t] or b"") for c in b"[]\n0123456789")]
        picked = [ids[int(k)] for k in torch.randint(len(ids), (100,), generator=rng)] + tricky[:300]
        for t in picked:
            if t in index.eos_ids:
                continue
            nxt = g.run(s, index.tokens[t])
            assert nxt[0] == "end" or index.allowed(g, nxt).n > 0, (s[:3], index.tokens[t])


def test_keywords_follow_valid_commands(index, tokenizer):
    g = CommandGrammar(INFOS[4])
    firsts = {index.tokens[t][:1] for t in index.allowed(g, g.initial()).id_list()}
    assert firsts == {b"S", b"E"}
    g = CommandGrammar(dict(BROWSE, link_ids=[]))  # listed but nothing to click: not offered
    assert all(lit != b"Clicked on link " for lit, _ in g.literals)


# --- decoding ----------------------------------------------------------------------------------


def run(model, tokenizer, index, rows, config, limits=None):
    prompts, infos = zip(*rows)
    enc = tokenizer(list(prompts), return_tensors="pt", padding=True)
    return generate(model, index, enc.input_ids, enc.attention_mask, [CommandGrammar(i) for i in infos],
                    config, max_new_tokens=limits)


def test_every_sampled_action_is_valid(tiny_model, tokenizer, index):
    rows = list(zip(PROMPTS, INFOS))
    seen = set()
    for seed in range(12):
        gens = run(tiny_model, tokenizer, index, rows, DecodeConfig(max_new_tokens=20, temperature=1.0, seed=seed))
        for (_, info), gen in zip(rows, gens):
            check_action(gen.text, info)
            assert gen.complete and 1 <= gen.n_tokens <= 20
            assert gen.n_tokens == len(gen.token_ids) == len(gen.token_logprobs) == len(gen.token_model_logprobs)
            # masking renormalises over a subset, so a token is never less likely masked than unmasked
            assert gen.model_logprob <= gen.logprob + 1e-4 <= 1e-4
            assert gen.logprob == pytest.approx(sum(gen.token_logprobs), abs=1e-4)
            spelled = b"".join(index.tokens[t] or b"" for t in gen.token_ids)
            assert spelled.startswith(gen.text.encode())
            seen.add(gen.text.split(" ")[0] if info["phase"] == "browse" else "answer")
    assert {"Quote:", "Clicked", "Search", "answer"} <= seen  # the fuzzing reached every argument kind


def test_over_budget_rows_are_steered_to_a_complete_command(tiny_model, tokenizer, index):
    rows = [("x", dict(BROWSE, valid_commands=["Scrolled down"])), ("x", dict(BROWSE, valid_commands=["Quote:"])),
            ("x", INFOS[5])]
    for seed in range(4):
        gens = run(tiny_model, tokenizer, index, rows, DecodeConfig(max_new_tokens=1, temperature=1.0, seed=seed))
        for (_, info), gen in zip(rows, gens):
            check_action(gen.text, info)
            assert gen.complete
    assert gens[0].n_tokens > 1  # "Scrolled down 2" does not fit in one token


def test_sampling_is_reproducible_under_a_seed(tiny_model, tokenizer, index):
    rows = list(zip(PROMPTS, INFOS))
    config = DecodeConfig(max_new_tokens=16, temperature=1.0, top_p=0.9, seed=3)
    a = run(tiny_model, tokenizer, index, rows, config)
    b = run(tiny_model, tokenizer, index, rows, config)
    c = run(tiny_model, tokenizer, index, rows, replace(config, seed=4))
    assert [g.token_ids for g in a] == [g.token_ids for g in b]
    assert [g.token_ids for g in a] != [g.token_ids for g in c]


def test_batched_greedy_equals_unbatched(tiny_model, tokenizer, index):
    rows = list(zip(PROMPTS, INFOS))  # prompts of different lengths: the batch is left-padded
    together = run(tiny_model, tokenizer, index, rows, DecodeConfig(max_new_tokens=16))
    kept = run(tiny_model, tokenizer, index, rows, DecodeConfig(max_new_tokens=16, drop_finished=False))
    assert [g.token_ids for g in together] == [g.token_ids for g in kept]
    assert len({g.n_tokens for g in together}) > 1  # rows did finish at different steps
    for row, gen in zip(rows, together):
        alone = run(tiny_model, tokenizer, index, [row], DecodeConfig(max_new_tokens=16))[0]
        assert alone.token_ids == gen.token_ids and alone.text == gen.text
        assert alone.logprob == pytest.approx(gen.logprob, abs=1e-3)
        assert alone.model_logprob == pytest.approx(gen.model_logprob, abs=1e-3)


def test_guided_answer_must_cite_before_it_can_end():
    from citeagent.policies.constrained import CommandGrammar
    from citeagent.policies.guided import guide

    info = {"phase": "answer", "quote_numbers": [1, 2], "valid_commands": []}
    free, guided = CommandGrammar(info), CommandGrammar(guide(info))
    for g in (free, guided):
        assert g.run(g.initial(), b"It returns a str [3]") is None  # no quote 3
    plain = b"It returns a str."
    assert free.can_end(free.run(free.initial(), plain))
    assert not guided.can_end(guided.run(guided.initial(), plain))
    assert guided.can_end(guided.run(guided.initial(), b"It returns a str [2]."))
    # with no quotes there is nothing to cite, so the requirement does not apply
    bare = CommandGrammar(guide({"phase": "answer", "quote_numbers": [], "valid_commands": []}))
    assert bare.can_end(bare.run(bare.initial(), plain))


def test_guided_quotes_are_whole_words_and_long_enough():
    from citeagent.policies.constrained import CommandGrammar
    from citeagent.policies.guided import GuideConfig, guide

    window = "json.dumps returns a str holding the JSON document. Short tail"
    info = {"phase": "browse", "view": "document", "valid_commands": ["Quote:", "Back", "End: Answer"],
            "quotable_text": window, "page": {"url": "u"}, "quotes": [], "past_actions": ["Search json", "Clicked on link 0"]}
    free, guided = CommandGrammar(info), CommandGrammar(guide(info, GuideConfig(min_quote_chars=20)))
    assert guide(info)["valid_commands"] == ["Quote:"]
    for text, free_ok, guided_ok in [
        (b"Quote: json", True, False),  # a word, but 4 chars
        (b"Quote: json.dumps returns a s", True, False),  # long enough, but ends inside "str"
        (b"Quote: json.dumps returns a str", True, True),  # 31 chars, at a word end
        (b"Quote: Short", True, False),
        (b"Quote: Short tail", True, True),  # shorter than 20, but the window ends there
    ]:
        for g, ok in ((free, free_ok), (guided, guided_ok)):
            s = g.run(g.initial(), text)
            assert s is not None and g.can_end(s) == ok, (text, ok)


def test_an_answer_over_budget_is_steered_into_a_citation(tiny_model, tokenizer, index):
    from citeagent.policies.guided import guide

    info = guide({"phase": "answer", "quote_numbers": [1, 2], "valid_commands": []})
    for seed in range(3):
        gens = run(tiny_model, tokenizer, index, [("Question: q\nAnswer:", info)],
                   DecodeConfig(max_new_tokens=6, temperature=1.0, seed=seed))
        g = gens[0]
        assert g.complete and re.search(r"\[[12]\]", g.text), g.text


def test_repetition_penalty_by_hand():
    from citeagent.policies.constrained import _penalize_repeats

    logits = torch.tensor([[2.0, -1.0, 0.5, 3.0]])
    out = _penalize_repeats(logits, [[0, 1, 1]], 2.0)
    assert out.tolist() == [[1.0, -2.0, 0.5, 3.0]]
    assert _penalize_repeats(logits, [[0]], 1.0) is logits


def test_an_answer_cannot_cite_the_same_quote_twice_in_a_row():
    from citeagent.policies.constrained import CommandGrammar

    g = CommandGrammar({"phase": "answer", "quote_numbers": [1, 2], "valid_commands": []})
    for text, ok in [(b"Paris [1][2].", True), (b"Paris [1][1]", False), (b"Paris [1] [1]", False),
                     (b"Paris [1]. Rome [1].", True), (b"[2][1][2]", True), (b"[12]", False),
                     (b"Paris [1][1", False)]:  # refused at the digit, so decoding never gets stuck there
        assert (g.run(g.initial(), text) is not None) == ok, text
    one = CommandGrammar({"phase": "answer", "quote_numbers": [1], "valid_commands": []})
    assert one.run(one.initial(), b"Paris [1][") is None  # no other quote could follow the "["
