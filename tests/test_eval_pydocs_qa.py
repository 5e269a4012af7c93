"""The project's pydocs QA set (corpora/pydocs_qa.jsonl) against the pydocs corpus it is for."""
import pytest

from citeagent.eval.answer_metrics import contains_answer, separate_words
from citeagent.eval.datasets import PYDOCS_QA, load_dataset
from citeenv.sources import load_corpus


@pytest.fixture(scope="module")
def qa():
    return load_dataset("pydocs")


@pytest.fixture(scope="module")
def corpus():
    return load_corpus("pydocs")


def test_size_and_coverage(qa):
    assert PYDOCS_QA.is_file()
    assert len(qa.examples) >= 150 and not qa.skipped
    assert qa.corpus == "pydocs"
    ids = [e.id for e in qa.examples]
    assert len(set(ids)) == len(ids)
    assert len({e.question for e in qa.examples}) == len(ids)
    topics = {e.meta.get("topic") for e in qa.examples}
    assert topics == {"language reference", "standard library"}
    reference = [e for e in qa.examples if e.meta["topic"] == "language reference"]
    modules = {u for e in qa.examples for u in e.gold_urls if "/library/" in u}
    assert len(reference) >= 50 and len(modules) >= 80


def test_every_support_url_is_in_the_corpus_and_holds_an_answer(qa, corpus):
    missing, unsupported = [], []
    for e in qa.examples:
        assert e.answers and e.gold_urls, e.id
        docs = [corpus.by_url(u) for u in e.gold_urls]
        if any(d is None for d in docs):
            missing.append((e.id, e.gold_urls))
            continue
        # A bare yes/no is found on any page; it cannot be the evidence that the page supports.
        real = [a for a in e.answers if separate_words(a) not in ("yes", "no", "")]
        if not any(contains_answer(d.text, real) for d in docs):
            unsupported.append((e.id, e.question, e.answers))
    assert not missing, f"support urls not in the pydocs corpus: {missing[:5]}"
    assert not unsupported, f"pages that do not contain an accepted answer: {unsupported[:5]}"
