"""On-disk indexes: build, reopen, rebuild, in-memory indexes and the `index` commands."""
import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest

from citeenv.corpus import CorpusError
from citeenv.index import (IndexMissingError, build_index, default_index_dir, in_memory_index, index_info, index_name,
                       open_index, read_manifest)
from citeenv.index_cli import main as cli
from citeenv.search.bm25 import BM25Searcher
from citeenv.search.hybrid import HybridSearcher
from citeenv.sources import load_corpus
from citeenv.sources.hotpotqa import question_corpus, read_hotpotqa_records


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("CITEAGENT_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def make_jsonl(path, n=40, extra=""):
    topics = ["volcano eruption lava", "piano sonata composer", "rocket launch orbit", "bread yeast oven"]
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            f.write(json.dumps({"id": f"doc{i}", "title": f"Page {i}",
                                "text": f"Page {i} is about {topics[i % 4]}. It has detail number {i}. {extra}"}) + "\n")
    return path


def test_build_and_open_pydocs_bm25(home):
    out = build_index("pydocs", show_progress=False)
    assert out == home / "indexes" / "pydocs" == default_index_dir("pydocs")
    manifest = read_manifest(out)
    assert manifest["spec"] == "pydocs" and manifest["format"] == 1 and "bm25" in manifest["kinds"]
    assert manifest["passages"] > 3000 and manifest["versions"]["bm25s"]
    for name in ("manifest.json", "corpus/documents.jsonl", "corpus/passages.jsonl", "bm25/searcher.json"):
        assert (out / name).is_file()
    corpus, searcher = open_index("pydocs")
    assert isinstance(searcher, BM25Searcher) and len(corpus.passages) == manifest["passages"]
    fresh = BM25Searcher.build(load_corpus("pydocs").passages, show_progress=False)
    for q in ["json.dumps", "assert statement", "context manager protocol"]:
        assert searcher.search(q, 10) == fresh.search(q, 10)
    assert searcher.search("json.dumps", 3)[0].doc_id == "pydocs:module:json"
    # The index directory itself also opens, and so does it as a corpus spec.
    assert open_index(out)[1].search("json.dumps", 5) == searcher.search("json.dumps", 5)
    assert len(load_corpus(str(out))) == len(corpus)


def test_missing_index_says_how_to_build_it(tmp_path):
    with pytest.raises(IndexMissingError, match=r"citeagent index build --corpus pydocs\b"):
        open_index("pydocs")
    path = make_jsonl(tmp_path / "docs.jsonl")
    build_index(str(path), show_progress=False)  # bm25 only
    with pytest.raises(IndexMissingError, match=f"citeagent index build --corpus {path} --kinds bm25,dense"):
        open_index(str(path), kind="hybrid")
    with pytest.raises(CorpusError, match="Unknown index kind 'sparse'"):
        open_index(str(path), kind="sparse")


def test_build_if_missing(tmp_path):
    path = make_jsonl(tmp_path / "docs.jsonl")
    corpus, searcher = open_index(f"jsonl:{path}", build_if_missing=True, show_progress=False)
    assert len(corpus) == 40 and searcher.search("volcano lava", 1)[0].doc_id in {f"doc{i}" for i in range(0, 40, 4)}


def test_rebuild_keeps_kinds_only_for_the_same_corpus(tmp_path):
    path = make_jsonl(tmp_path / "docs.jsonl")
    spec = str(path)
    out = build_index(spec, kinds="dense", show_progress=False)
    build_index(spec, kinds=["bm25"], show_progress=False)
    assert set(read_manifest(out)["kinds"]) == {"bm25", "dense"}  # dense kept: same corpus
    corpus, hybrid = open_index(spec, kind="hybrid")
    assert isinstance(hybrid, HybridSearcher)
    assert hybrid.search("piano composer", 1)[0].doc_id in {f"doc{i}" for i in range(1, 40, 4)}
    make_jsonl(path, n=41, extra="changed")  # the source changed: the old dense index is stale
    build_index(spec, kinds="bm25", show_progress=False)
    manifest = read_manifest(out)
    assert set(manifest["kinds"]) == {"bm25"} and manifest["documents"] == 41
    assert not (out / "dense").exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no staging left behind


def test_failed_build_leaves_old_index(tmp_path):
    path = make_jsonl(tmp_path / "docs.jsonl")
    out = build_index(str(path), show_progress=False)
    before = read_manifest(out)
    path.write_text("{broken\n")
    with pytest.raises(CorpusError, match="No documents in"):
        build_index(str(path), show_progress=False)
    assert read_manifest(out) == before and open_index(str(path))[1].search("volcano", 1)


def test_refuses_to_overwrite_a_non_index_directory(tmp_path):
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "notes.txt").write_text("keep me")
    with pytest.raises(CorpusError, match="not an index directory; refusing"):
        build_index(str(make_jsonl(tmp_path / "d.jsonl")), out_dir=tmp_path / "precious", show_progress=False)
    assert (tmp_path / "precious" / "notes.txt").read_text() == "keep me"


def test_index_names_are_stable_and_distinct(tmp_path):
    a = make_jsonl(tmp_path / "a.jsonl")
    assert index_name("pydocs") == "pydocs" and index_name("hotpotqa:5a8b57f2") == "hotpotqa-5a8b57f2"
    assert index_name(str(a)) == index_name(f"jsonl:{a}") and index_name(str(a)).startswith("jsonl-a.jsonl-")
    (tmp_path / "sub").mkdir()
    b = make_jsonl(tmp_path / "sub" / "a.jsonl")
    assert index_name(str(a)) != index_name(str(b))


def test_in_memory_index_per_question(home):
    records = list(read_hotpotqa_records(limit=20))
    found = 0
    for r in records:
        corpus = question_corpus(r)
        searcher = in_memory_index(corpus, "bm25")
        gold = {t for t, _ in r["supporting_facts"]}
        found += bool(gold & {h.doc_id for h in searcher.search(r["question"], 2)})
    assert found >= 15  # BM25 puts a gold paragraph in the top 2 for most questions
    hybrid = in_memory_index(question_corpus(records[0]), "hybrid")
    assert hybrid.search("Scott Derrickson nationality", 1)[0].doc_id == "Scott Derrickson"
    assert not (home / "indexes").exists()  # nothing written to disk


def test_cli_build_info_list(tmp_path, capsys):
    path = make_jsonl(tmp_path / "docs.jsonl")
    out = tmp_path / "idx"
    assert cli(["index", "build", "--corpus", str(path), "--out", str(out), "--quiet"]) == 0
    assert "40 documents" in capsys.readouterr().out
    assert cli(["index", "info", "--out", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["documents"] == 40 and info["directory"] == str(out)
    assert index_info(out)["kinds"].keys() == {"bm25"}
    assert cli(["index", "list"]) == 0
    assert "hf:<name>[:<split>]" in capsys.readouterr().out


def test_cli_errors_are_one_line_not_tracebacks(tmp_path, capsys):
    assert cli(["index", "build", "--corpus", "nonsense-corpus", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: Unknown corpus 'nonsense-corpus'. Known corpora:") and "Traceback" not in err
    assert cli(["index", "info", "--corpus", "pydocs"]) == 2
    assert "citeagent index build --corpus pydocs" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1}\n')
    assert cli(["index", "build", "--corpus", str(bad), "--quiet"]) == 2
    assert "no 'text' field" in capsys.readouterr().err
    assert cli(["index", "build", "--corpus", str(bad), "--kinds", "bm25,sparse", "--quiet"]) == 2
    assert "Unknown index kind 'sparse'" in capsys.readouterr().err


def test_cli_build_dense_with_a_chosen_encoder(tmp_path, capsys):
    path = make_jsonl(tmp_path / "docs.jsonl", n=8)
    out = tmp_path / "idx"
    assert cli(["index", "build", "--corpus", str(path), "--out", str(out), "--kinds", "dense", "--encoder", "torch",
                "--quiet"]) == 0
    meta = json.loads((out / "dense" / "searcher.json").read_text())
    assert meta["config"]["encoder"] == "torch"
    corpus, searcher = open_index(out, kind="dense")
    assert searcher.encoder.backend.name == "torch"
    assert searcher.search("lava from a volcano", 1)[0].doc_id in {"doc0", "doc4"}
