"""`citeagent ask` and `citeagent browse` as a user runs them: real subprocesses, the real pydocs
corpus, real index built on first use; and what `citeagent --help` and the trainers' flags cost."""
import dataclasses
import json
import re
import os
import subprocess
import sys

import pytest

from citeenv.documents import normalize_ws

QUESTION = "How do I serialize a Python object to a JSON formatted string?"


def run(*args, input=None, timeout=900):
    return subprocess.run([sys.executable, "-m", "citeagent.cli", *args], input=input, capture_output=True,
                          text=True, timeout=timeout, env=os.environ.copy())


@pytest.fixture(scope="module")
def pydocs():
    from citeenv.index import open_index

    corpus, _ = open_index("pydocs", kind="bm25", build_if_missing=True)
    return corpus


def check_verbatim(answer, corpus):
    assert answer["quotes"], "the answer cites nothing"
    numbers = [q["n"] for q in answer["quotes"]]
    assert numbers == list(range(1, len(numbers) + 1))
    import re

    markers = [int(m) for m in re.findall(r"\[(\d+)\]", answer["text"])]
    assert markers and set(markers) <= set(numbers)
    for q in answer["quotes"]:
        doc = corpus.by_url(q["url"])
        assert doc is not None, q["url"]
        assert q["text"] in normalize_ws(doc.text)
        assert normalize_ws(doc.text[q["start"]:q["end"]]) == q["text"]


def test_ask_baseline_answers_with_verbatim_citations(pydocs):
    r = run("ask", QUESTION, "--json", "--policy", "baseline")
    assert r.returncode == 0, r.stderr
    answer = json.loads(r.stdout)
    check_verbatim(answer, pydocs)
    assert any("json" in q["url"] for q in answer["quotes"])


def test_ask_defaults_to_the_cpu_agent_answering_with_a_quoted_sentence(pydocs):
    r = run("ask", QUESTION, "--json")  # no --policy: the trained CPU agent; pydocs: the sentence form
    assert r.returncode == 0, r.stderr
    answer = json.loads(r.stdout)
    check_verbatim(answer, pydocs)
    assert answer["quotes"]
    m = re.fullmatch(r"(.+?) \[(\d+)\]", answer["text"])
    assert m, answer["text"]  # one statement, cited
    cited = next(q for q in answer["quotes"] if q["n"] == int(m.group(2)))
    assert m.group(1) in cited["text"]  # verbatim from the quote it cites
    short = json.loads(run("ask", QUESTION, "--json", "--answer-form", "span").stdout)
    text = re.sub(r"\[\d+\]", "", short["text"]).strip()
    assert text and len(text.split()) <= 12 and text in m.group(1)  # the span the sentence was built around
    assert short["quotes"] == answer["quotes"]  # the same browsing


def test_ask_human_and_gophercite_output_and_trace(pydocs):
    r = run("ask", QUESTION, "--show-trace")
    assert r.returncode == 0, r.stderr
    assert "Sources:" in r.stdout and "[1] " in r.stdout
    assert ">>> Search " in r.stderr and "Next action:" in r.stderr
    r = run("ask", QUESTION, "--gophercite")
    assert r.returncode == 0 and r.stdout.startswith("%<") and "%[" in r.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["ask", "   "], "question is empty"),
        (["ask", "x" * 5000], "limit is"),
        (["ask", "what?", "--corpus", "no-such-corpus"], "no-such-corpus"),
        (["ask", "what?", "--web"], "--search-url"),
        (["ask", "what?", "--policy", ""], "--policy is empty"),
    ],
)
def test_ask_bad_input_gets_one_clear_line(args, message, pydocs):
    r = run(*args)
    assert r.returncode == 2
    assert message in r.stderr and "Traceback" not in r.stderr


def test_browse_saves_demonstrations_and_keeps_earlier_ones(tmp_path, pydocs):
    out = tmp_path / "demos.jsonl"
    out.write_text('{"earlier": "line kept"}\n')
    commands = "\n".join(["Search json dumps", "Bogus command", "Clicked on link 0", "Find in page: dumps",
                          "End: Answer", "No quotes, so no markers."]) + "\n"
    r = run("browse", "--question", "What does json.dumps do?", "--out", str(out), input=commands)
    assert r.returncode == 0, r.stderr
    lines = out.read_text().splitlines()
    assert json.loads(lines[0]) == {"earlier": "line kept"}
    rec = json.loads(lines[1])
    assert rec["complete"] and rec["question"] == "What does json.dumps do?"
    assert [s["action"] for s in rec["steps"]][:2] == ["Search json dumps", "Bogus command"]
    assert rec["steps"][1]["error"] and rec["steps"][0]["observation"].startswith("Question:")
    assert rec["answer"]["text"] == "No quotes, so no markers."
    # an interrupted session (input ends mid-episode) is saved, marked incomplete
    r = run("browse", "--question", "csv?", "--out", str(out), input="Search csv reader\n")
    rec = json.loads(out.read_text().splitlines()[2])
    assert r.returncode == 0 and rec["complete"] is False and len(rec["steps"]) == 1


def test_browse_cpu_layout_records_what_trained_policies_see(tmp_path, pydocs):
    from citeagent.train import CPU_BROWSER
    from citeenv.browser import BrowserConfig

    out = tmp_path / "demos.jsonl"
    for extra in ([], ["--layout", "cpu"]):
        r = run("browse", "--question", "json?", "--out", str(out), *extra, input="Search function return value\nTop\n")
        assert r.returncode == 0, r.stderr
    default, cpu = [json.loads(x) for x in out.read_text().splitlines()]
    # the observation before the second action is the result list: search_k results in each layout
    results = lambda rec: rec["steps"][1]["observation"].count("\u3010")  # noqa: E731 (a link's 【)
    assert results(cpu) == CPU_BROWSER["search_k"] < results(default) <= BrowserConfig().search_k


def test_help_imports_no_heavy_library():
    """`citeagent --help` builds only the command line: no torch, transformers, fastapi, SQLAlchemy."""
    heavy = ("torch", "transformers", "numpy", "fastapi", "sqlalchemy", "bcrypt", "matplotlib", "trl", "peft")
    code = ("import sys, runpy\nsys.argv = ['citeagent', '--help']\n"
            "try:\n    runpy.run_module('citeagent.cli', run_name='__main__')\nexcept SystemExit:\n    pass\n"
            f"print('HEAVY', [m for m in {heavy!r} if m in sys.modules])")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=os.environ.copy())
    assert r.returncode == 0, r.stderr
    assert "train" in r.stdout and "eval" in r.stdout
    assert r.stdout.strip().endswith("HEAVY []")


@pytest.mark.parametrize("name", ["demos", "bc", "judge", "rm", "ppo", "harmless-pm", "rules"])
def test_every_trainer_gets_its_flags_from_its_config(name, capsys):
    from citeagent.cli import main
    from citeagent.train.cli import TRAINERS, load

    trainer = next(t for t in TRAINERS if t.name == name)
    with pytest.raises(SystemExit) as e:
        main(["train", name, "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for f in dataclasses.fields(load(trainer.config)):
        if f.init:
            assert f"--{f.name.replace('_', '-')}" in text, f.name


@pytest.mark.parametrize("flags, expected", [
    ([], {"safety": False, "combined_reward": None, "safety_metrics": None}),
    (["--safety", "--combined-reward"], {"safety": True, "combined_reward": "default", "safety_metrics": None}),
    (["--combined-reward", "support=1,rule=3", "--safety-metrics"],
     {"safety": False, "combined_reward": "support=1,rule=3", "safety_metrics": True}),
    (["--safety-metrics", "false"], {"safety": False, "combined_reward": None, "safety_metrics": False}),
])
def test_eval_safety_flags_reach_the_config(flags, expected):
    """The safety flags are EvalConfig fields: a bare --combined-reward means the default weights and
    --safety-metrics left out means "on for the redteam data set only"."""
    from citeagent.cli import build_parser
    from citeagent.config_flags import config_from_args
    from citeagent.eval.runner import EvalConfig

    argv = ["eval", "--dataset", "redteam", *flags]
    config = config_from_args(build_parser(argv).parse_args(argv), EvalConfig)
    assert {k: getattr(config, k) for k in expected} == expected
