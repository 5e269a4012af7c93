"""Corpus, JSONL/HF loading and the corpus sources (pydocs, HotpotQA)."""
import gzip
import json
import logging
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest

from citeenv.corpus import Corpus, CorpusError, parse_column_map
from citeenv.documents import Document
from citeenv.sources import UnknownCorpusError, known_corpora, load_corpus
from citeenv.sources.hotpotqa import find_record, question_corpus, read_hotpotqa_records
from citeenv.sources.pydocs import build_pydocs


@pytest.fixture(scope="module")
def pydocs():
    return build_pydocs()


@pytest.fixture(scope="module")
def hotpot_records():
    return list(read_hotpotqa_records())


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")


def write_jsonl(path, rows):
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write((r if isinstance(r, str) else json.dumps(r)) + "\n")
    return path


def assert_offsets_round_trip(corpus):
    for p in corpus.passages:
        doc = corpus.get(p.doc_id)
        assert doc.text[p.start:p.end] == p.text
        assert p.text == p.text.strip() and p.text


# --- Corpus ----------------------------------------------------------------------------------

def test_corpus_lookup_and_chunk_offsets():
    long_text = " ".join(f"Sentence number {i} talks about topic {i % 7}." for i in range(80))
    docs = [Document("a", "Alpha", "http://x/a", long_text), Document("b", "Beta", "http://x/b", "Short one.")]
    corpus = Corpus(docs, name="t", chunk_chars=200)
    assert len(corpus) == 2
    assert corpus.get("a").title == "Alpha" and corpus.get("zzz") is None
    assert corpus.by_url("http://x/b").id == "b" and corpus.by_url("http://x/none") is None
    assert len([p for p in corpus.passages if p.doc_id == "a"]) > 5  # the long text was cut up
    assert all(len(p.text) <= 200 for p in corpus.passages)
    assert corpus.passage("a::1").doc_id == "a" and corpus.passage("a::999") is None
    assert_offsets_round_trip(corpus)


def test_corpus_rejects_duplicate_ids():
    with pytest.raises(CorpusError, match="two documents with id 'a'"):
        Corpus([Document("a", "", "u1", "x"), Document("a", "", "u2", "y")])


def test_corpus_save_load_round_trip(tmp_path, pydocs):
    pydocs.save(tmp_path / "c")
    loaded = Corpus.load(tmp_path / "c")
    assert [d.to_dict() for d in loaded.documents] == [d.to_dict() for d in pydocs.documents]
    assert loaded.passages == pydocs.passages
    assert loaded.name == "pydocs"


def test_corpus_load_missing_dir_says_how_to_fix(tmp_path):
    with pytest.raises(CorpusError, match="citeagent index build"):
        Corpus.load(tmp_path)


# --- JSONL -----------------------------------------------------------------------------------

def test_jsonl_with_column_map(tmp_path):
    path = write_jsonl(tmp_path / "docs.jsonl", [
        {"docid": "d1", "contents": "Paris is the capital of France.", "year": 2020},
        {"docid": "d2", "contents": "Berlin is the capital of Germany.", "title": "Berlin"},
    ])
    corpus = Corpus.from_jsonl(path, column_map="id=docid,text=contents")
    assert [d.id for d in corpus] == ["d1", "d2"]
    assert corpus.get("d1").title == "d1" and corpus.get("d2").title == "Berlin"
    assert corpus.get("d1").url == "local://docs/d1"
    assert corpus.get("d1").meta == {"year": 2020}  # unmapped fields are kept, not dropped


def test_jsonl_alternative_names_need_an_explicit_map(tmp_path):
    path = write_jsonl(tmp_path / "docs.jsonl", [{"id": "1", "body": "text here"}])
    with pytest.raises(CorpusError, match="column-map text=FIELD") as e:
        Corpus.from_jsonl(path)
    assert "body" in str(e.value)  # names the fields the lines do have


def test_jsonl_bad_lines_skipped_with_warning(tmp_path, caplog):
    path = write_jsonl(tmp_path / "docs.jsonl", [
        {"id": "1", "text": "good one"},
        "{not json",
        {"id": "2", "text": "good two"},
        {"id": "3", "text": 42},
        "",
        {"id": "1", "text": "same id again"},
        "[1, 2]",
    ])
    with caplog.at_level(logging.WARNING):
        corpus = Corpus.from_jsonl(path)
    assert [d.id for d in corpus] == ["1", "2"]
    msg = caplog.text
    assert "skipped 4 bad line(s) of 6" in msg
    for n in ("line 2", "line 4", "line 6", "line 7"):
        assert n in msg
    assert "duplicate id '1'" in msg


def test_jsonl_strict_fails_with_line_number(tmp_path):
    path = write_jsonl(tmp_path / "docs.jsonl", [{"id": "1", "text": "ok"}, "{oops"])
    with pytest.raises(CorpusError, match=r"line 2: not valid JSON"):
        Corpus.from_jsonl(path, strict=True)


def test_jsonl_non_utf8_is_decoded_with_replacement(tmp_path, caplog):
    path = tmp_path / "latin.jsonl"
    path.write_bytes(b'{"id": "x", "text": "caf\xe9 au lait"}\n{"id": "y", "text": "plain"}\n')
    with caplog.at_level(logging.WARNING):
        corpus = Corpus.from_jsonl(path)
    assert corpus.get("x").text == "caf\ufffd au lait"
    assert "not valid UTF-8" in caplog.text and "lines 1" in caplog.text


def test_jsonl_gz_and_empty(tmp_path):
    gz = tmp_path / "docs.jsonl.gz"
    with gzip.open(gz, "wt", encoding="utf-8") as f:
        f.write(json.dumps({"id": "g", "text": "gzipped text"}) + "\n")
    assert Corpus.from_jsonl(gz).get("g").text == "gzipped text"
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    with pytest.raises(CorpusError, match="No documents in"):
        Corpus.from_jsonl(empty)
    with pytest.raises(CorpusError, match="No such JSONL file"):
        Corpus.from_jsonl(tmp_path / "missing.jsonl")


def test_parse_column_map_errors():
    assert parse_column_map("id=doc_id, text=body") == {"id": "doc_id", "text": "body"}
    with pytest.raises(CorpusError, match="Unknown field.*bodytext"):
        parse_column_map("bodytext=body")
    with pytest.raises(CorpusError, match="expected FIELD=COLUMN"):
        parse_column_map("id")


# --- the registry --------------------------------------------------------------------------

def test_unknown_corpus_lists_known_ones():
    with pytest.raises(UnknownCorpusError) as e:
        load_corpus("wikipedia-2030")
    for spec in known_corpora():
        assert spec in str(e.value)


def test_load_corpus_jsonl_specs(tmp_path):
    path = write_jsonl(tmp_path / "mini.jsonl", [{"id": "m", "text": "mini corpus"}])
    assert load_corpus(f"jsonl:{path}").get("m") is not None
    assert load_corpus(str(path)).get("m") is not None


# --- pydocs ----------------------------------------------------------------------------------

def test_pydocs_content(pydocs):
    assert len(pydocs) > 300 and len(pydocs.passages) > 3000
    json_page = pydocs.get("pydocs:module:json")
    assert json_page.url == "https://docs.python.org/3/library/json.html"
    assert "json.dumps(obj, *, skipkeys=False" in json_page.text
    assert pydocs.get("pydocs:topic:assert").title == 'The "assert" statement'
    os_path = pydocs.get("pydocs:module:os.path")
    assert "os.path.join(" in os_path.text
    links = [lk for d in pydocs for lk in d.links]
    assert len(links) > 100
    assert any(lk.url == "https://docs.python.org/3/library/sys.html#sys.exc_info" for lk in links)
    for d in pydocs:
        for lk in d.links:
            assert d.text[lk.start:lk.end] == lk.text
            page, _, anchor = lk.url.partition("#")
            target = pydocs.by_url(page)
            assert target is not None and target.id != d.id
            assert not anchor or anchor in target.meta["anchors"]
    assert_offsets_round_trip(pydocs)


def test_pydocs_is_deterministic(pydocs):
    again = build_pydocs()
    assert [d.to_dict() for d in again.documents] == [d.to_dict() for d in pydocs.documents]
    assert again.passages == pydocs.passages


# --- HotpotQA --------------------------------------------------------------------------------

def test_hotpot_records_official_schema(hotpot_records):
    assert len(hotpot_records) == 886
    r = hotpot_records[0]
    assert list(r) == ["_id", "question", "answer", "type", "level", "supporting_facts", "context"]
    assert r["_id"] == "5a8b57f25542995d1e6f1371" and r["answer"] == "yes"
    assert r["supporting_facts"] == [["Scott Derrickson", 0], ["Ed Wood", 0]]
    assert len(r["context"]) == 10
    assert len(list(read_hotpotqa_records(limit=5))) == 5


def test_hotpot_per_question_corpus(hotpot_records):
    r = hotpot_records[0]
    corpus = load_corpus(f"hotpotqa:{r['_id']}")
    assert len(corpus) == 10
    doc = corpus.get("Scott Derrickson")
    assert doc.url == "https://en.wikipedia.org/wiki/Scott_Derrickson"
    sentences = dict(r["context"])["Scott Derrickson"]
    assert doc.text == "".join(sentences)
    assert [doc.text[s:e] for s, e in doc.meta["sentences"]] == sentences
    assert_offsets_round_trip(corpus)
    with pytest.raises(CorpusError, match="No HotpotQA question with _id 'nope'"):
        load_corpus("hotpotqa:nope")


def test_hotpot_pooled_corpus(hotpot_records):
    corpus = load_corpus("hotpotqa")
    titles = {t for r in hotpot_records for t, _ in r["context"]}
    assert len(corpus) == len(titles)
    for r in hotpot_records[:50]:
        for title, sentences in r["context"]:
            doc = corpus.get(title)
            assert [doc.text[s:e] for s, e in doc.meta["sentences"]] == sentences


def test_find_record_returns_a_private_copy(hotpot_records):
    rid = hotpot_records[1]["_id"]
    find_record(rid)["context"].clear()
    assert len(find_record(rid)["context"]) == 10


def to_hub_schema(r):
    return {
        "id": r["_id"], "question": r["question"], "answer": r["answer"], "type": r["type"], "level": r["level"],
        "supporting_facts": {"title": [t for t, _ in r["supporting_facts"]],
                             "sent_id": [i for _, i in r["supporting_facts"]]},
        "context": {"title": [t for t, _ in r["context"]], "sentences": [s for _, s in r["context"]]},
    }


def test_hotpot_hub_schema_through_datasets(tmp_path, hotpot_records, hf_cache):
    import datasets

    rows = [to_hub_schema(r) for r in hotpot_records[:3]]
    parquet = tmp_path / "hotpot.parquet"
    datasets.Dataset.from_list(rows).to_parquet(str(parquet))
    assert list(read_hotpotqa_records(parquet)) == hotpot_records[:3]
    # A dataset directory with split-named files, as a hub snapshot is laid out.
    folder = tmp_path / "hotpot_dir"
    folder.mkdir()
    write_jsonl(folder / "validation.jsonl", rows)
    assert list(read_hotpotqa_records(folder, split="validation", limit=2)) == hotpot_records[:2]
    # Per-question corpora from hub-schema records are the same as from official ones.
    assert question_corpus(next(read_hotpotqa_records(parquet))).passages == question_corpus(hotpot_records[0]).passages


def test_hotpot_bad_sources(tmp_path):
    with pytest.raises(CorpusError, match="No such HotpotQA file"):
        list(read_hotpotqa_records(tmp_path / "missing.jsonl"))
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"_id": "x", "question": "q?"}])
    with pytest.raises(CorpusError, match="line 1: not a HotpotQA record"):
        list(read_hotpotqa_records(bad))


# --- Hugging Face datasets ---------------------------------------------------------------------

def test_hf_corpus_from_local_parquet(tmp_path, hf_cache):
    import datasets

    rows = [{"doc_id": f"d{i}", "heading": f"Title {i}", "body": f"Body text number {i}."} for i in range(5)]
    path = tmp_path / "docs.parquet"
    datasets.Dataset.from_list(rows).to_parquet(str(path))
    corpus = load_corpus(f"hf:{path}", column_map="id=doc_id,title=heading,text=body")
    assert [d.id for d in corpus] == [f"d{i}" for i in range(5)]
    assert corpus.get("d3").title == "Title 3" and corpus.get("d3").text == "Body text number 3."
    with pytest.raises(CorpusError, match="no 'text' column; its columns are: doc_id, heading, body"):
        load_corpus(f"hf:{path}")
    with pytest.raises(CorpusError, match="no column\\(s\\) for text=contents"):
        load_corpus(f"hf:{path}", column_map="text=contents")


def test_hf_corpus_from_saved_dataset_dir(tmp_path, hf_cache):
    import datasets

    dd = datasets.DatasetDict({
        "train": datasets.Dataset.from_list([{"id": "t", "text": "train row"}]),
        "test": datasets.Dataset.from_list([{"id": "s", "text": "test row"}]),
    })
    dd.save_to_disk(str(tmp_path / "saved"))
    assert load_corpus(f"hf:{tmp_path / 'saved'}").get("t").text == "train row"  # train by default
    assert load_corpus(f"hf:{tmp_path / 'saved'}:test").get("s").text == "test row"
    with pytest.raises(CorpusError, match="no split 'validation'; its splits are: train, test"):
        load_corpus(f"hf:{tmp_path / 'saved'}:validation")


def test_hf_by_name_without_hub_says_so(hf_cache):
    with pytest.raises(CorpusError, match="needs a hub connection"):
        load_corpus("hf:no-such-user/no-such-dataset")
