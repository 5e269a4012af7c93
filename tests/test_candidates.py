"""Candidate enumeration (citeenv.candidates) over a real local corpus: every candidate is a
command the browser accepts, and no state is left without a choice."""
import copy

import pytest

from citeenv.browser import Browser, BrowserConfig
from citeenv.candidates import CandidateConfig, find_terms, names_in, split_sentences
from citeenv.corpus import Corpus
from citeenv.documents import Document, Link
from citeenv.index import in_memory_index
from citeenv.local import LocalBackend

MAG = "Arthur's Magazine (1844–1846) was an American literary periodical. It was edited by T.S. Arthur in Philadelphia."
FFW = "First for Women is a woman's magazine published by Bauer Media Group in the USA. The magazine was started in 1989."
LONG = "Filler words about nothing at all. " * 80 + "The last sentence names Philadelphia again."


@pytest.fixture(scope="module")
def backend():
    spans = [[0, 66], [66, len(MAG)]]
    docs = [
        Document("mag", "Arthur's Magazine", "https://en.wikipedia.org/wiki/Arthur%27s_Magazine", MAG,
                 links=[Link("Philadelphia", "https://en.wikipedia.org/wiki/Philadelphia", MAG.index("Philadelphia"),
                             MAG.index("Philadelphia") + 12)],
                 meta={"sentences": spans}),
        Document("ffw", "First for Women", "https://en.wikipedia.org/wiki/First_for_Women", FFW),
        Document("phl", "Philadelphia", "https://en.wikipedia.org/wiki/Philadelphia", LONG),
    ]
    corpus = Corpus(docs, name="mags")
    return LocalBackend(corpus, in_memory_index(corpus))


def browser(backend, question="Which magazine was started first, Arthur's Magazine or First for Women?", **kw):
    b = Browser(backend, BrowserConfig(candidates=CandidateConfig(), **kw))
    b.reset(question)
    return b


def commands(b):
    return [c.command for c in b.candidates()]


def assert_all_valid(b):
    for c in b.candidates():
        trial = Browser(b.backend, b.config)
        trial.state = copy.deepcopy(b.state)
        trial.step(c.command)
        assert trial.state.error is None, (c.command, trial.state.error)


def test_split_sentences_by_hand():
    text = "One sentence here. Two: e.g. this one stays whole!  Three?"
    assert [text[a:b] for a, b in split_sentences(text)] == ["One sentence here.", "Two: e.g. this one stays whole!", "Three?"]
    assert split_sentences("   ") == []


def test_split_sentences_at_paragraphs_and_signature_lines():
    text = "json.dumps(obj, *, indent=None)\nSerialize obj. e.g. the\nwrapped line ends here.\n\nnext paragraph"
    assert [text[a:b] for a, b in split_sentences(text)] == [
        "json.dumps(obj, *, indent=None)", "Serialize obj. e.g. the\nwrapped line ends here.", "next paragraph"]
    # joined: the signature with its first sentence (79 characters), when that fits the limit
    assert [text[a:b] for a, b in split_sentences(text, join_signature_chars=79)] == [
        "json.dumps(obj, *, indent=None)\nSerialize obj. e.g. the\nwrapped line ends here.", "next paragraph"]
    assert [text[a:b] for a, b in split_sentences(text, join_signature_chars=78)] == [
        "json.dumps(obj, *, indent=None)", "Serialize obj. e.g. the\nwrapped line ends here.", "next paragraph"]
    # only the first sentence joins; a paragraph break only after a signature on a line of its own
    # (the language reference's layout), and a line that merely ends in brackets is not one
    two = "f(x)\nReturn x. Then more.\n\ng(y)\n\nIts description."
    assert [two[a:b] for a, b in split_sentences(two, 400)] == ["f(x)\nReturn x.", "Then more.", "g(y)\n\nIts description."]
    topic = "str.split(sep=None)\n\n   Return a list. More.\n\nSee also (below)\n\nNot joined."
    assert [topic[a:b] for a, b in split_sentences(topic, 400)] == [
        "str.split(sep=None)\n\n   Return a list.", "More.", "See also (below)", "Not joined."]


def test_find_terms_by_hand():
    assert find_terms("What does time.clock_gettime_ns return?") == ["time.clock_gettime_ns", "clock_gettime_ns"]
    assert find_terms("Default of max_workers in ThreadPoolExecutor?") == ["ThreadPoolExecutor", "max_workers", "Default"]
    assert find_terms("Where is Philadelphia mentioned?") == ["Philadelphia"]
    assert find_terms("what is it?") == []


def test_names_by_hand():
    assert names_in("The film by Tim Burton starred Johnny Depp. Wood's life in New York City.") == [
        "Tim Burton", "Johnny Depp", "Wood", "New York City"]


def test_first_state_offers_the_question_and_decline(backend):
    b = browser(backend)
    assert commands(b) == ["Search Which magazine was started first, Arthur's Magazine or First for Women?", "End: Decline"]
    assert_all_valid(b)


def test_results_list_every_result_as_a_click(backend):
    b = browser(backend)
    b.step(commands(b)[0])
    cands = b.candidates()
    clicks = [c for c in cands if c.kind == "Clicked on link"]
    assert [c.command for c in clicks] == [f"Clicked on link {i}" for i in range(len(b.state.view.results))]
    assert clicks[0].title == b.state.view.results[0].title and clicks[0].rank == 0 and not clicks[0].visited
    assert "End: Answer" not in commands(b)  # nothing quoted yet
    assert "Back" not in commands(b)  # nothing before the results
    assert_all_valid(b)


def test_document_offers_its_sentences_as_quotes_with_the_corpus_boundaries(backend):
    b = browser(backend)
    b.step(commands(b)[0])
    k = next(i for i, r in enumerate(b.state.view.results) if r.title == "Arthur's Magazine")
    b.step(f"Clicked on link {k}")
    quotes = [c for c in b.candidates() if c.kind == "Quote:"]
    assert [q.text for q in quotes] == [MAG[:66].strip(), MAG[66:].strip()]
    assert "Search Philadelphia" in commands(b)  # a name on the page, for the next hop
    assert "Search T.S" not in commands(b)
    assert "Clicked on link 0" in commands(b)  # the in-page link
    assert_all_valid(b)
    b.step(quotes[0].command)
    assert b.state.quotes[0].text == quotes[0].text
    after = [c for c in b.candidates() if c.kind == "Quote:"]
    assert [q.text for q in after] == [MAG[66:].strip()]  # a quote is offered once
    assert "End: Answer" in commands(b)
    assert_all_valid(b)


def test_long_page_scrolls_and_cut_sentences(backend):
    b = browser(backend, "Where is Philadelphia mentioned?", window_chars=300)
    b.step(commands(b)[0])
    k = next(i for i, r in enumerate(b.state.view.results) if r.title == "Philadelphia")
    b.step(f"Clicked on link {k}")
    b.state.view.window = 0
    cmds = commands(b)
    assert "Scrolled down 1" in cmds and "Scrolled up 1" not in cmds
    assert_all_valid(b)
    b.step("Scrolled down 1")
    assert "Scrolled up 1" in commands(b)
    assert_all_valid(b)


def test_find_jumps_to_the_question_name_and_moves_back_are_marked_visited(backend):
    b = browser(backend, "Where is Philadelphia mentioned?", window_chars=300)
    b.step(commands(b)[0])
    k = next(i for i, r in enumerate(b.state.view.results) if r.title == "Philadelphia")
    b.step(f"Clicked on link {k}")
    b.step("Top")  # window 0; the window the click opened stays "seen"
    last = b.state.view.view.n_windows - 1
    finds = [c for c in b.candidates() if c.kind == "Find in page:"]
    assert [(f.command, f.rank, f.visited) for f in finds] == [("Find in page: Philadelphia", last, last in b.state.view.seen)]
    assert finds[0].text.startswith("Philadelphia again.")  # what is found where it lands
    assert_all_valid(b)
    down = next(c for c in b.candidates() if c.kind == "Scrolled down")
    assert (down.rank, down.visited) == (1, False)
    b.step("Scrolled down 1")
    up = next(c for c in b.candidates() if c.kind == "Scrolled up")
    assert (up.rank, up.visited) == (0, True)  # window 0 was read: going back is marked
    b.step(finds[0].command)
    assert b.state.view.window == last
    assert not [c for c in b.candidates() if c.kind == "Find in page:"]  # it would not move


def test_question_without_content_words_still_has_choices(backend):
    b = browser(backend, "?")
    assert commands(b)[-1] == "End: Decline"
    assert_all_valid(b)


def test_no_candidates_outside_browsing_and_info_carries_them(backend):
    b = browser(backend)
    assert b.info()["candidates"][0]["kind"] == "Search"
    b.step("End: Decline")
    assert b.candidates() == []
    plain = Browser(backend, BrowserConfig())
    plain.reset("x?")
    assert "candidates" not in plain.info()  # only when asked for


def test_quote_limit_removes_quote_candidates(backend):
    b = browser(backend, max_quotes=1)
    b.step(commands(b)[0])
    k = next(i for i, r in enumerate(b.state.view.results) if r.title == "Arthur's Magazine")
    b.step(f"Clicked on link {k}")
    b.step([c for c in commands(b) if c.startswith("Quote:")][0])
    assert not [c for c in commands(b) if c.startswith("Quote:")]
    assert_all_valid(b)
