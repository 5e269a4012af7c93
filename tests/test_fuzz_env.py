"""A small, fast run of scripts/fuzz_env.py: random, mutated and hostile commands through the
browser over a hostile JSONL corpus and the web backend on 127.0.0.1, and random malformed HTML
through the renderer. Nothing may raise and no rendered page may break the Page contract. (The
full run, and the 1 s bound per document, are the script's: no timed assertions here.)"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from web_support import network_guard  # noqa: F401 - fixture: only loopback connections

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "fuzz_env.py"


def load_fuzz():
    spec = importlib.util.spec_from_file_location("fuzz_env", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_fuzz_subset_finds_no_exception(network_guard):  # noqa: F811
    fuzz = load_fuzz()
    result = fuzz.run(fuzz.FuzzConfig(commands=1000, web_share=0.2, corpus="", html_docs=100, seed=1, max_seconds=600))
    assert result["command_exceptions"] == 0 and result["html"]["exceptions"] == 0, result["examples"]
    assert result["html"]["broken_pages"] == 0, result["examples"]
    assert not result["stopped_early"] and result["commands"] == 1000
    backends = result["backends"]
    assert backends["web_loopback"]["commands"] == 200 and backends["hostile_corpus"]["commands"] == 800
    # the fuzzer reaches past the first page: some commands are accepted, some refused with a message
    assert 0 < backends["hostile_corpus"]["rejected_with_a_message"] < 800
    assert result["html"]["documents"] == 100


def test_the_fuzzer_counts_a_failure_it_is_shown():
    fuzz = load_fuzz()
    tally = fuzz.Tally(examples=2)

    class Broken:
        def reset(self, seed=None, options=None):
            return "obs", {"phase": "browse", "valid_commands": ["Search"]}

        def step(self, action):
            raise IndexError("boom")

    import random
    import time

    fuzz.drive("broken", Broken(), 5, random.Random(0), tally, time.monotonic() + 60)
    assert tally.failures["broken: step raised IndexError"] == 15 and tally.examples[0]["what"] == "step raised IndexError"
