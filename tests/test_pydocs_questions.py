"""Generated pydocs training questions, the leakage guard, the gold-questions loader and the
HotpotQA adapter. Offsets in the hand-made documents were counted by hand (see the comments)."""
from __future__ import annotations

import json

import pytest

from citeagent.cli import main
from citeagent.data.gold_questions import (
    GoldQuestionError,
    hotpotqa_gold_questions,
    load_gold_questions,
    write_gold_questions,
)
from citeagent.data.leakage import LeakageReport, drop_leaking
from citeagent.data.pydocs_questions import (
    GenerateConfig,
    GenerationStats,
    answer_in_support,
    generate_questions,
    head_phrase,
    signature_parameters,
)
from citeagent.eval.datasets import load_jsonl_dataset, question_key
from citeenv.documents import Document, normalize_ws

# "demo — A demo module." (21) + "\n\n" + "A demo module." (14) + "\n\n" -> the first entry at 39.
PARTS = [
    "demo — A demo module.",
    "A demo module.",
    "demo.area(width, *, unit='cm')\nReturn the area of a rectangle in square\nunits.\n\nRaises ValueError if width is negative.",
    "class demo.Shape(name)\nA subclass of Base that draws shapes.",
    "demo.Shape.is_round(self)\nReturn True if the shape has no corners.",
]
URL = "https://docs.python.org/3/library/demo.html"
TOPIC_URL = "https://docs.python.org/3/reference/topics.html#del"


def demo_module() -> Document:
    text = "\n\n".join(PARTS)
    # area: 39; its entry is 30 + 1 + 47 + 2 + 39 = 119 characters, then "\n\n": Shape at 160;
    # Shape's entry is 22 + 1 + 37 = 60 characters, then "\n\n": is_round at 222.
    anchors = {"demo.area": 39, "demo.Shape": 160, "demo.Shape.is_round": 222}
    return Document("pydocs:module:demo", PARTS[0], URL, text, meta={"kind": "module", "module": "demo", "anchors": anchors})


def demo_topic() -> Document:
    # 'The "del" statement' (19) "\n" 19 stars "\n\n" (41), an indented grammar line (33) "\n\n" (76),
    # a sentence of 52 characters and two spaces: the gold sentence starts at 130 and is 64 long.
    text = ('The "del" statement\n*******************\n\n   del_stmt ::= "del" target_list\n\n'
            "Deletion of a name removes the binding of that name.  If the name is\n"
            'unbound, a "NameError" exception will be raised.\n')
    return Document("pydocs:topic:del", 'The "del" statement', TOPIC_URL, text, meta={"kind": "topic", "topic": "del"})


def by_question(records):
    return {r["question"]: r for r in records}


def spans(record):
    return [(s["start"], s["end"], s["text"]) for s in record["support"]]


SIGNATURE = (39, 69, "demo.area(width, *, unit='cm')")  # 30 characters from 39
RETURN_SENTENCE = (70, 117, "Return the area of a rectangle in square units.")  # 47 with its line break
RAISE_SENTENCE = (119, 158, "Raises ValueError if width is negative.")  # after the blank line: 117 + 2


@pytest.mark.parametrize("question, template, answers, support", [
    ("What does demo.area return?", "returns", ["the area of a rectangle"], [RETURN_SENTENCE]),
    ("What exception does demo.area raise if width is negative?", "raises", ["ValueError"], [RAISE_SENTENCE]),
    ("What is the default value of the unit parameter of demo.area?", "default", ["'cm'"], [SIGNATURE]),
    ("Is the unit parameter of demo.area keyword-only?", "keyword_only", ["yes"], [SIGNATURE]),
    ("Is the width parameter of demo.area keyword-only?", "keyword_only", ["no"], [SIGNATURE]),
    ("Which demo function returns the area of a rectangle in square units?", "which", ["area", "demo.area"],
     [SIGNATURE, RETURN_SENTENCE]),
    # Shape's docstring starts at 160 + 22 + 1 = 183 and is 37 characters long.
    ("What is the base class of demo.Shape?", "base_class", ["Base"], [(183, 220, "A subclass of Base that draws shapes.")]),
    # is_round's header is 25 characters from 222; its sentence (40) starts at 248.
    ("When does demo.Shape.is_round return True?", "returns_true", ["the shape has no corners"],
     [(248, 288, "Return True if the shape has no corners.")]),
    ("Which demo.Shape method returns True if the shape has no corners?", "which", ["is_round", "demo.Shape.is_round"],
     [(222, 247, "demo.Shape.is_round(self)"), (248, 288, "Return True if the shape has no corners.")]),
    ("In the Python documentation on The del statement, what exception is raised if the name is unbound?",
     "topic_raises", ["NameError"], [(130, 194, 'If the name is unbound, a "NameError" exception will be raised.')]),
])
def test_each_template_on_a_hand_made_document(question, template, answers, support):
    docs = [demo_module(), demo_topic()]
    records = by_question(generate_questions(docs))
    assert question in records, sorted(records)
    record = records[question]
    assert record["template"] == template
    assert record["answers"] == answers
    assert spans(record) == support
    doc = docs[0] if record["support"][0]["url"] == URL else docs[1]
    for s in record["support"]:
        assert normalize_ws(doc.text[s["start"]:s["end"]]) == s["text"]
        assert (s["doc_id"], s["url"], s["title"]) == (doc.id, doc.url, doc.title)
    assert record["source"] == "pydocs-gen" and record["id"].startswith("pydocs-gen-")


def test_the_hand_made_documents_give_exactly_the_expected_questions():
    records = generate_questions([demo_module(), demo_topic()])
    assert len(records) == 10  # the ten of the parametrised test, nothing else (no question from prose or code)
    only = generate_questions([demo_module(), demo_topic()], GenerateConfig(templates="raises, topic_raises"))
    assert sorted(r["template"] for r in only) == ["raises", "topic_raises"]


def module_page(name: str, entries: list[tuple[str, str]]) -> Document:
    """A module page as the pydocs source lays it out: title, then entries joined by blank lines."""
    text, anchors = name, {}
    for qual, entry in entries:
        text += "\n\n"
        anchors[qual] = len(text)
        text += entry
    return Document(f"pydocs:module:{name}", name, f"https://docs.python.org/3/library/{name}.html", text,
                    meta={"kind": "module", "module": name, "anchors": anchors})


def test_a_question_two_entries_answer_differently_is_dropped():
    doc = module_page("calc", [("calc.a", "calc.a(x)\nReturn the sum of the items."),
                               ("calc.b", "calc.b(x)\nReturn the sum of the items.")])
    stats = GenerationStats()
    questions = {r["question"] for r in generate_questions([doc], stats=stats)}
    assert "Which calc function returns the sum of the items?" not in questions  # a or b?
    assert {"What does calc.a return?", "What does calc.b return?"} <= questions
    assert stats.ambiguous == 1


def test_boilerplate_signatures_give_at_most_same_sentence_questions():
    # Every Enum class shows EnumType.__call__'s signature; it is one fact, not one per class.
    doc = module_page("enums", [(f"enums.E{i}", f"class enums.E{i}(value, names=None)") for i in range(6)])
    records = generate_questions([doc], GenerateConfig(same_sentence=3))
    assert sorted(r["question"] for r in records) == [
        f"What is the default value of the names parameter of enums.E{i}?" for i in range(3)]


def test_head_phrase_keeps_the_noun_phrase_and_refuses_broken_spans():
    assert head_phrase("a copy of the string converted to uppercase", 6) == "a copy of the string"
    assert head_phrase("the random seed used by the generator", 6) == "the random seed"  # "seed" is no participle
    assert head_phrase("numeric and monetary locale-specific parameters", 6) == "numeric and monetary locale-specific parameters"
    assert head_phrase("the canonical path of the specified filename, eliminating links", 6) == "the canonical path"
    assert head_phrase("b'' if already at EOF", 6) is None  # one case's value, not what it returns
    assert head_phrase("the digit-wise 'exclusive or' of the two operands", 3) is None  # cut inside a quotation


def test_signature_parameters_kinds():
    params = signature_parameters("(a, b=', ', /, c=(1, 2), *args, d: int = 3, **kw) -> str")
    assert params == [("a", None, "positional"), ("b", "', '", "positional"), ("c", "(1, 2)", "normal"),
                      ("args", None, "var"), ("d", "3", "keyword_only"), ("kw", None, "var")]
    assert signature_parameters("(width[, fillchar])") is None  # documentation notation, not Python


@pytest.fixture(scope="module")
def subset_documents():
    from citeenv.sources import load_corpus

    # The real loader (a subprocess reading the running Python's documentation), on a few pages.
    corpus = load_corpus("pydocs", modules=["json", "os", "collections", "shutil", "inspect", "statistics"])
    return corpus.documents


def test_generated_subset_keeps_its_invariants(subset_documents):
    stats = GenerationStats()
    records = generate_questions(subset_documents, GenerateConfig(seed=3), stats)
    assert len(records) > 500
    docs = {d.id: d for d in subset_documents}
    assert {"which", "returns", "returns_true", "raises", "default", "keyword_only", "topic_raises"} <= set(stats.per_template)
    for r in records:
        assert answer_in_support(r), r
        assert all(a.lower() in ("yes", "no") or a.lower() in " ".join(s["text"] for s in r["support"]).lower()
                   for a in r["answers"][:1]), r
        for s in r["support"]:
            assert normalize_ws(docs[s["doc_id"]].text[s["start"]:s["end"]]) == s["text"]
            assert docs[s["doc_id"]].url == s["url"]
    assert len({r["id"] for r in records}) == len(records)
    assert len({question_key(r["question"]) for r in records}) == len(records)


def test_generation_is_deterministic_given_a_seed(subset_documents):
    a = generate_questions(subset_documents, GenerateConfig(seed=1))
    b = generate_questions(subset_documents, GenerateConfig(seed=1))
    c = generate_questions(subset_documents, GenerateConfig(seed=2))
    assert a == b
    assert [r["id"] for r in a] != [r["id"] for r in c]
    limited = generate_questions(subset_documents, GenerateConfig(seed=1, limit=50))
    assert limited == a[:50]


# --- leakage guard --------------------------------------------------------------------------------

def gen(question, answers, url=URL):
    return {"id": "g-" + question, "question": question, "answers": answers,
            "support": [{"doc_id": "d", "title": "t", "url": url, "text": "x", "start": 0, "end": 1}],
            "template": "which", "source": "pydocs-gen"}


def test_leakage_guard_drops_each_kind_of_leak(tmp_path):
    eval_file = tmp_path / "eval.jsonl"
    eval_file.write_text("\n".join(json.dumps(r) for r in [
        {"id": "e1", "question": "Which json function serializes obj to a JSON formatted str?", "answers": ["dumps"],
         "support_urls": ["https://docs.python.org/3/library/json.html"]},
        {"id": "e2", "question": "What does demo.area return?", "answers": ["the area"], "support_urls": [URL]},
    ]) + "\n")
    evaluation = load_jsonl_dataset(eval_file).examples
    records = [
        gen("  what does DEMO.AREA   return?", ["something"]),  # the same question key
        gen("Which json function serializes obj into a JSON formatted str?", ["x"]),  # the same content words
        gen("Which demo function computes sizes?", ["The area"], url=URL),  # e2's page and answer
        gen("Which demo function computes sizes?", ["The area"], url=TOPIC_URL),  # e2's answer, other page
        gen("Which json function reads a file?", ["load"]),  # unrelated
    ]
    report = LeakageReport()
    kept = drop_leaking(records, evaluation, report=report)
    assert [r["question"] for r in kept] == ["Which demo function computes sizes?", "Which json function reads a file?"]
    assert kept[0]["support"][0]["url"] == TOPIC_URL
    assert report.checked == 5
    assert report.dropped_by == {"same_question": 1, "overlapping_question": 1, "same_page_and_answer": 1}
    assert report.dropped == 3 and "3 of 5 dropped" in report.summary()


def test_leakage_threshold_is_a_parameter(tmp_path):
    eval_file = tmp_path / "eval.jsonl"
    eval_file.write_text(json.dumps({"id": "e", "question": "Which shutil function copies a file tree?",
                                     "answers": ["copytree"]}) + "\n")
    evaluation = load_jsonl_dataset(eval_file).examples
    record = gen("Which shutil function copies a directory tree recursively?", ["x"])  # 4 of 7 words: 0.57
    assert drop_leaking([record], evaluation, jaccard=0.6) == [record]
    assert drop_leaking([record], evaluation, jaccard=0.5) == []


# --- the loader -----------------------------------------------------------------------------------

def test_loader_reads_what_the_writer_wrote(tmp_path):
    records = generate_questions([demo_module(), demo_topic()])
    path = tmp_path / "q.jsonl"
    assert write_gold_questions(records, path) == len(records)
    assert load_gold_questions(path) == records


@pytest.mark.parametrize("line, message", [
    ("{not json", "line 2: not valid JSON"),
    ('["a list"]', "line 2: expected a JSON object, got list"),
    ('{"id": "b", "answers": ["x"], "support": [{"text": "x"}], "source": "hotpotqa"}', "line 2: the field 'question' is missing"),
    ('{"id": "b", "question": "q?", "answers": "x", "support": [{"text": "x"}], "source": "hotpotqa"}',
     "line 2: the field 'answers' must be a list, got str"),
    ('{"id": "b", "question": "q?", "answers": [""], "support": [{"text": "x"}], "source": "hotpotqa"}',
     "line 2: the answers must be a non-empty list of non-empty strings"),
    ('{"id": "b", "question": "q?", "answers": ["x"], "support": [], "source": "hotpotqa"}', "line 2: the support list is empty"),
    ('{"id": "b", "question": "q?", "answers": ["x"], "support": [{"text": "x"}], "source": "pydocs-gen"}',
     "line 2: support[0].doc_id must be a str"),
    ('{"id": "b", "question": "q?", "answers": ["x"], "support": [{"text": "x", "doc_id": "d", "url": "u", "start": 5, '
     '"end": 2}], "source": "pydocs-gen"}', "line 2: support[0] has start 5 and end 2"),
    ('{"id": "a", "question": "q?", "answers": ["x"], "support": [{"text": "x"}], "source": "hotpotqa"}',
     "line 2: duplicate id 'a' (first on line 1)"),
])
def test_loader_names_the_file_the_line_and_the_problem(tmp_path, line, message):
    path = tmp_path / "q.jsonl"
    good = '{"id": "a", "question": "q?", "answers": ["x"], "support": [{"text": "x"}], "source": "hotpotqa"}'
    path.write_text(good + "\n" + line + "\n")
    with pytest.raises(GoldQuestionError) as err:
        load_gold_questions(path)
    assert str(path) in str(err.value) and message in str(err.value)


def test_loader_missing_or_empty_file_says_how_to_make_one(tmp_path):
    with pytest.raises(GoldQuestionError, match="No questions file at .*citeagent train pydocs-questions"):
        load_gold_questions(tmp_path / "absent.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(GoldQuestionError, match="holds no questions"):
        load_gold_questions(tmp_path / "empty.jsonl")


# --- HotpotQA -------------------------------------------------------------------------------------

def hotpot(qid, question, facts, answer="Paris", type_="bridge"):
    return {"_id": qid, "question": question, "answer": answer, "type": type_, "level": "easy",
            "supporting_facts": facts,
            "context": [["France", ["France is a country.", " Its capital is Paris."]], ["Seine", ["The Seine is a river."]]]}


def test_hotpotqa_adapter_keeps_the_schema_and_leaves_out_held_out_questions():
    held = hotpot("h1", "What is held out?", [["France", 0]])
    records = [
        hotpot("t1", "What is the capital of France?", [["France", 1], ["Seine", 0]]),
        hotpot("x1", "what is  HELD out?", [["France", 0]]),  # the held-out question under another id
        held,
        hotpot("t2", "Which river?", [["Seine", 3]]),  # a fact past the paragraph's end
        hotpot("t3", "Is Paris in France?", [["France", 0]], answer="yes", type_="comparison"),
    ]
    out = hotpotqa_gold_questions(records, heldout=[held])
    assert [r["id"] for r in out] == ["t1", "t3"]
    assert out[0] == {"id": "t1", "question": "What is the capital of France?", "answers": ["Paris"],
                      "support": [{"title": "France", "text": "Its capital is Paris.", "sent_id": 1},
                                  {"title": "Seine", "text": "The Seine is a river.", "sent_id": 0}],
                      "type": "bridge", "source": "hotpotqa"}
    assert out[1]["type"] == "comparison"


def test_hotpotqa_adapter_uses_the_projects_held_out_split_by_default():
    from citeagent.train import hotpotqa_split
    from citeenv.sources.hotpotqa import read_hotpotqa_records

    records = list(read_hotpotqa_records())
    train, heldout = hotpotqa_split(records)
    out = hotpotqa_gold_questions(heldout[:5] + train[:20])
    held_keys = {question_key(r["question"]) for r in heldout}
    assert out and not any(question_key(r["question"]) in held_keys for r in out)
    assert len(out) <= 20
    for r in out:
        assert r["source"] == "hotpotqa" and r["support"] and r["answers"]


# --- the command ----------------------------------------------------------------------------------

def test_cli_writes_questions_and_prints_the_summary(tmp_path, capsys):
    out = tmp_path / "q.jsonl"
    rc = main(["train", "pydocs-questions", "--out", str(out), "--modules", "json,shutil", "--limit", "40", "--seed", "2"])
    assert rc == 0
    records = load_gold_questions(out)
    assert len(records) == 40
    printed = capsys.readouterr().out
    assert "40 questions from 2 documents" in printed and "leakage guard:" in printed
    for template in {r["template"] for r in records}:
        assert f"  {template}" in printed


@pytest.mark.parametrize("args, message", [
    (["--limit", "0"], "--limit must be at least 1"),
    (["--jaccard", "1.5"], "--jaccard is a fraction in (0, 1]"),
    (["--modules", " , "], "--modules is empty"),
    (["--eval", "/nonexistent/eval.jsonl"], "No data set file at /nonexistent/eval.jsonl"),
    (["--templates", "which,whatever"], "Unknown template(s) whatever; the templates are: which, returns"),
    (["--corpus", "hotpotqa", "--modules", "json"], "--modules builds the pydocs corpus afresh"),
    (["--corpus", "hotpotqa:5a8b57f25542995d1e6f1371"], "No questions could be made from the corpus"),
])
def test_cli_bad_input_gets_one_clear_line(tmp_path, capsys, args, message):
    out = tmp_path / "q.jsonl"
    rc = main(["train", "pydocs-questions", "--out", str(out)] + args)
    assert rc == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not out.exists()
