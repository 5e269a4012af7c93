"""The CPU-scale candidate policy: exact log-probs over valid candidates, masking, the features,
the expert BC imitates, and its artifacts. A tiny deterministic encoder stands in for MiniLM: the
encoder is not what these tests test (tests/test_encoder.py does)."""
import json
import math

import numpy as np
import pytest
import torch

from citeagent.policies.candidate import (EMBED_DIM, KINDS, N_FEATURES, N_SCALAR, CandidatePolicy,
                                          PolicyArtifactError, Scorer, allowed_candidates, masked_log_softmax, pad)
from citeagent.train.cpu_bc import expert_choice


class WordEncoder:
    """Each text a normalised bag of hashed words: deterministic and cheap."""

    def encode(self, texts):
        out = np.zeros((len(texts), EMBED_DIM), np.float32)
        for i, t in enumerate(texts):
            for w in t.lower().split():
                out[i, sum(map(ord, w)) % EMBED_DIM] += 1
            n = np.linalg.norm(out[i])
            if n:
                out[i] /= n
        return out


def cand(command, kind, text="", rank=-1, url="", title="", visited=False):
    return {"command": command, "kind": kind, "text": text, "rank": rank, "url": url, "title": title, "visited": visited}


def info(cands, quotes=(), view="results", question="Who edited Arthur's Magazine?", page=None):
    return {"phase": "browse", "question": question, "quotes": list(quotes), "candidates": cands,
            "past_actions": ["Search " + question], "view": view, "page": page or {}, "actions_left": 10}


def test_masked_log_softmax_by_hand():
    scores = torch.tensor([[1.0, 2.0, 3.0, 100.0]])
    mask = torch.tensor([[True, True, True, False]])
    logp = masked_log_softmax(scores, mask)
    z = math.log(math.exp(1) + math.exp(2) + math.exp(3))
    assert logp[0, :3].tolist() == pytest.approx([1 - z, 2 - z, 3 - z], abs=1e-6)
    assert logp[0, 3].item() == float("-inf")  # an invalid candidate has probability 0, however it scores
    half = masked_log_softmax(scores, mask, temperature=2.0)
    z2 = math.log(math.exp(0.5) + math.exp(1) + math.exp(1.5))
    assert half[0, 0].item() == pytest.approx(0.5 - z2, abs=1e-6)


def test_pad_masks_the_missing_candidates():
    x, m = pad([np.ones((2, N_FEATURES), np.float32), np.ones((3, N_FEATURES), np.float32)])
    assert x.shape == (2, 3, N_FEATURES)
    assert m.tolist() == [[True, True, False], [True, True, True]]
    assert x[0, 2].abs().sum() == 0


def scorer_preferring(feature: int) -> Scorer:
    """A scorer whose score is exactly the value of one feature (a browsing candidate's feature
    `feature`; an answer candidate's feature 0, through the answer head's ReLU)."""
    s = Scorer(hidden=8)
    with torch.no_grad():
        for p in s.parameters():
            p.zero_()
        s.net[0].weight[0, feature] = 1.0
        s.net[2].weight[0, 0] = 1.0
        s.net[4].weight[0, 0] = 1.0
        s.answer_head[0].weight[0, 0] = 1.0
        s.answer_head[2].weight[0, 0] = 1.0
    return s


def test_policy_log_probs_are_the_softmax_of_the_scores():
    rank = len(KINDS) + 8  # the result-rank feature: (rank + 1) / 10
    policy = CandidatePolicy(scorer_preferring(rank), WordEncoder())
    cands = [cand(f"Clicked on link {i}", "Clicked on link", f"title {i}", rank=i, title=f"T{i}") for i in range(3)]
    cands.append(cand("End: Decline", "End: Decline"))
    action = policy.act("", info(cands))
    assert action == "Clicked on link 2"  # the highest rank feature wins when greedy
    d = policy.last_decisions[0]
    scores = [0.1, 0.2, 0.3, 0.0]
    z = math.log(sum(math.exp(s) for s in scores))
    assert d.logprob == pytest.approx(0.3 - z, abs=1e-5)
    assert d.features.shape == (4, N_FEATURES)


def test_features_by_hand():
    f = CandidatePolicy(Scorer(8), WordEncoder()).featurize([info(
        [cand("Quote: Arthur edited it.", "Quote:", "Arthur edited it.", rank=0, url="u", title="Arthur's Magazine"),
         cand("End: Answer", "End: Answer")],
        quotes=[{"text": "Arthur's Magazine was a periodical.", "url": "u", "title": "Arthur's Magazine"}],
        view="document", page={"url": "u", "title": "Arthur's Magazine"})])[0]
    o = len(KINDS)
    assert f[0, KINDS.index("Quote:")] == 1 and f[1, KINDS.index("End: Answer")] == 1
    enc = WordEncoder()
    q, c, quote = enc.encode(["Who edited Arthur's Magazine?", "Arthur edited it.", "Arthur's Magazine was a periodical."])
    assert f[0, o] == pytest.approx(float(q @ c), abs=1e-6)
    assert f[0, o + 1] == pytest.approx(float(quote @ c), abs=1e-6)
    assert f[0, o + 3] == pytest.approx(2 / 4)  # {arthur, edited} of the question's {edited, arthur, s, magazine}
    assert f[0, o + 6] == 1.0  # the page title occurs in the question
    assert f[0, o + 12] == pytest.approx(1 / 3)  # one quote already from this page
    assert np.allclose(f[0, N_SCALAR:N_SCALAR + EMBED_DIM], q * c)
    assert f[1, o] == 0 and not f[1, N_SCALAR:].any()  # End: Answer has no text
    assert f[0, N_SCALAR - 3 + 2] == 1  # view one-hot: document


def test_expert_follows_the_gold_evidence():
    support = [{"title": "Arthur's Magazine", "text": "Arthur's Magazine (1844–1846) was an American literary periodical."},
               {"title": "First for Women", "text": "First for Women was started in 1989."}]
    results = [cand("Search Philadelphia", "Search", "Philadelphia"),
               cand("Clicked on link 0", "Clicked on link", "Other. x", rank=0, title="Other"),
               cand("Clicked on link 1", "Clicked on link", "First for Women. ...", rank=1, title="First for Women"),
               cand("End: Decline", "End: Decline")]
    assert expert_choice(info(results), support) == 2
    doc = [cand("Quote: It was edited.", "Quote:", "It was edited.", url="u", title="Arthur's Magazine"),
           cand("Quote: gold", "Quote:", "Arthur's Magazine (1844–1846) was an American literary periodical.", url="u",
                title="Arthur's Magazine"),
           cand("Back", "Back"), cand("End: Decline", "End: Decline")]
    page = {"title": "Arthur's Magazine", "url": "u", "n_windows": 1}
    assert expert_choice(info(doc, view="document", page=page), support) == 1
    quoted = [{"text": s["text"], "url": "u", "title": s["title"]} for s in support]
    done = [cand("Back", "Back"), cand("End: Answer", "End: Answer"), cand("End: Decline", "End: Decline")]
    assert expert_choice(info(done, quotes=quoted, view="document", page=page), support) == 1
    # A gold title offered as a query (a bridge entity) is searched when no result holds it.
    bridge = [cand("Search First for Women", "Search", "First for Women"), cand("End: Decline", "End: Decline")]
    assert expert_choice(info(bridge, quotes=quoted[:1], view="none"), support) == 0


def test_expert_jumps_to_the_gold_sentence_on_a_long_page():
    support = [{"url": "https://docs.python.org/3/library/json.html", "text": "Serialize obj to a JSON formatted str."}]
    page = {"title": "json", "url": "https://docs.python.org/3/library/json.html", "n_windows": 9}
    doc = [cand("Quote: Other.", "Quote:", "Other sentence here."), cand("Find in page: json.dumps", "Find in page:", "json.dumps(obj) ...", rank=4),
           cand("Scrolled down 1", "Scrolled down", rank=3), cand("Back", "Back"), cand("End: Decline", "End: Decline")]
    assert expert_choice(info(doc, view="document", page=page), support) == 1  # a find before reading on
    assert expert_choice(info([c for c in doc if c["kind"] != "Find in page:"], view="document", page=page), support) == 1
    elsewhere = {"title": "pickle", "url": "https://docs.python.org/3/library/pickle.html", "n_windows": 9}
    assert expert_choice(info(doc, view="document", page=elsewhere), support) == 3  # not the gold page: Back


def test_a_quote_is_a_gold_sentences_evidence_when_it_holds_it_or_most_of_it():
    from citeagent.train.cpu_bc import _same

    gold = "Return the inverse hyperbolic tangent of x."  # 43 characters
    assert _same(gold, "math.atanh(x, /) Return the inverse hyperbolic tangent of x.")  # a signature unit holds it
    assert _same("math.atanh(x, /)", "math.atanh(x, /) Return the inverse hyperbolic tangent of x.")
    assert _same(gold, "Return  the inverse\nhyperbolic tangent of x.")  # whitespace normalised
    assert _same(gold, "Return the inverse hyperbolic tangent")  # 37 of 43: a window cut most of it
    assert not _same(gold, "Return the inverse")  # 18 of 43
    assert not _same(gold, "Return the arc cosine of x.") and not _same("", "anything")
    # the expert quotes a joined unit for either of its gold sentences
    support = [{"url": "u", "text": "math.atanh(x, /)"}, {"url": "u", "text": gold}]
    doc = [cand("Quote: math.acos(x, /) Return the arc cosine of x.", "Quote:", "math.acos(x, /) Return the arc cosine of x."),
           cand("Quote: joined", "Quote:", "math.atanh(x, /) Return the inverse hyperbolic tangent of x."),
           cand("Back", "Back"), cand("End: Answer", "End: Answer"), cand("End: Decline", "End: Decline")]
    page = {"title": "math", "url": "u", "n_windows": 1}
    assert expert_choice(info(doc, view="document", page=page), support) == 1
    quoted = [{"text": "math.atanh(x, /) Return the inverse hyperbolic tangent of x.", "url": "u", "title": "math"}]
    assert expert_choice(info(doc, quotes=quoted, view="document", page=page), support) == 3  # both held: answer


def test_answer_examples_quote_documentation_as_the_browser_splits_it():
    import random

    from citeagent.train.cpu_bc import quote_units
    from citeenv.candidates import split_sentences
    from citeenv.sources import load_corpus

    doc = load_corpus("pydocs").get("pydocs:module:math")
    gold = "Return the inverse hyperbolic tangent of x."
    start = doc.text.index(gold)
    support = [{"doc_id": doc.id, "start": start, "end": start + len(gold), "text": gold}]
    units = [" ".join(doc.text[a:b].split()) for a, b in split_sentences(doc.text, 400)]
    unit = "math.atanh(x, /) Return the inverse hyperbolic tangent of x."
    k = units.index(unit)
    seen_distractors = 0
    for seed in range(12):
        got = quote_units(support, random.Random(seed))
        assert unit in got and 1 <= len(got) <= 3 and len(set(got)) == len(got)
        others = [t for t in got if t != unit]
        assert set(others) <= set(units[k - 4:k + 5])  # neighbours of the gold unit
        seen_distractors += bool(others)
    assert 0 < seen_distractors < 12  # distractors three times in four, not always
    # without its own join setting a saved policy (config without the key) quotes units apart
    from citeagent.policies.candidate import CandidatePolicyConfig

    apart = quote_units(support, random.Random(0), CandidatePolicyConfig(candidates={"signature_join_chars": 0}))
    assert gold in apart and unit not in apart
    assert quote_units([support[0] | {"doc_id": "pydocs:module:no-such-page"}], random.Random(0)) == []


def test_allowed_candidates_drop_moves_back_to_read_windows_and_quotes_past_the_limit():
    cands = [cand("Quote: a b c", "Quote:", "a b c"), cand("Find in page: x", "Find in page:", "x", rank=2, visited=True),
             cand("Find in page: y", "Find in page:", "y", rank=5), cand("Scrolled down 1", "Scrolled down", rank=4),
             cand("Scrolled up 1", "Scrolled up", rank=2, visited=True), cand("Back", "Back"),
             cand("End: Answer", "End: Answer"), cand("End: Decline", "End: Decline")]
    state = info([dict(c) for c in cands], view="document")
    allowed_candidates(state, max_quotes=4)
    assert [c["command"] for c in state["candidates"]] == [
        "Quote: a b c", "Find in page: y", "Scrolled down 1", "Back", "End: Answer", "End: Decline"]
    full = info([dict(c) for c in cands], quotes=[{"text": "q", "url": "u"}] * 4, view="document")
    allowed_candidates(full, max_quotes=4)
    assert [c["command"] for c in full["candidates"]] == ["End: Answer", "End: Decline"]
    # the last action with nothing quoted: a quote (the browser then asks for the answer) or decline
    last = info([dict(c) for c in cands], view="document") | {"actions_left": 1}
    allowed_candidates(last, max_quotes=4)
    assert [c["command"] for c in last["candidates"]] == ["Quote: a b c", "End: Decline"]
    results = info([cand("Clicked on link 0", "Clicked on link", "t", rank=0), cand("End: Decline", "End: Decline")],
                   view="results") | {"actions_left": 1}
    allowed_candidates(results, max_quotes=4)
    assert [c["command"] for c in results["candidates"]] == ["End: Decline"]
    quoted = info([dict(c) for c in cands], quotes=[{"text": "q", "url": "u"}], view="document") | {"actions_left": 1}
    allowed_candidates(quoted, max_quotes=4)
    assert len(quoted["candidates"]) == 6  # with a quote the answer can cite it: nothing removed


def test_artifacts_round_trip_and_refuse_corruption(tmp_path):
    policy = CandidatePolicy(scorer_preferring(3), WordEncoder())
    policy.save(tmp_path / "p")
    again = CandidatePolicy.load(tmp_path / "p", encoder=WordEncoder())
    for a, b in zip(policy.scorer.state_dict().values(), again.scorer.state_dict().values()):
        assert torch.equal(a, b)
    meta = json.loads((tmp_path / "p" / "policy.json").read_text())
    (tmp_path / "p" / "policy.json").write_text(json.dumps(meta | {"n_answer_features": 5}))
    with pytest.raises(PolicyArtifactError, match="answer head reads 5 features.*--init"):
        CandidatePolicy.load(tmp_path / "p", encoder=WordEncoder())
    (tmp_path / "p" / "policy.json").write_text(json.dumps(meta))
    (tmp_path / "p" / "scorer.safetensors").write_bytes(b"not weights")
    with pytest.raises(PolicyArtifactError, match="corrupt.*citeagent train cpu-bc"):
        CandidatePolicy.load(tmp_path / "p", encoder=WordEncoder())
    with pytest.raises(PolicyArtifactError, match="missing.*citeagent train cpu-bc"):
        CandidatePolicy.load(tmp_path / "nothing", encoder=WordEncoder())
    # a policy saved before signature lines were joined keeps its quotable units; a new one joins
    policy.save(tmp_path / "p2")
    assert CandidatePolicy.load(tmp_path / "p2", encoder=WordEncoder()).config.candidates["signature_join_chars"] == 400
    legacy = json.loads((tmp_path / "p2" / "policy.json").read_text())
    del legacy["config"]["candidates"]["signature_join_chars"]
    (tmp_path / "p2" / "policy.json").write_text(json.dumps(legacy))
    assert CandidatePolicy.load(tmp_path / "p2", encoder=WordEncoder()).config.candidates["signature_join_chars"] == 0


def test_people_demonstrations_are_replayed_into_labelled_states(tmp_path):
    """A `citeagent browse` record: each accepted browsing step becomes a state labelled with the
    person's command; a command the enumeration lacks (Find in page) joins the candidates."""
    import json

    from citeagent.train.cpu_bc import demo_states

    text = "Arthur's Magazine was an American literary periodical. It was published in Philadelphia."
    docs = [{"id": "mag", "title": "Arthur's Magazine", "url": "https://example.org/mag", "text": text},
            {"id": "ffw", "title": "First for Women", "url": "https://example.org/ffw",
             "text": "First for Women is a woman's magazine published by Bauer Media Group."}]
    corpus = tmp_path / "docs.jsonl"
    corpus.write_text("".join(json.dumps(d) + "\n" for d in docs))
    q = "Where was Arthur's Magazine published?"
    steps = [{"action": f"Search {q}", "error": None}, {"action": "Clicked on link 0", "error": None},
             {"action": "Find in page: Philadelphia", "error": None}, {"action": "Clicked on link 9", "error": "no link 9"},
             {"action": "Quote: It was published in Philadelphia.", "error": None}, {"action": "End: Answer", "error": None},
             {"action": "Philadelphia [1]", "error": None}]
    demos = tmp_path / "demos.jsonl"
    demos.write_text(json.dumps({"question": q, "corpus": str(corpus), "steps": [dict(s, observation="") for s in steps],
                                 "complete": True}) + "\n")
    states, stats = demo_states([str(demos)], max_actions=10)
    chosen = [info["candidates"][label]["command"] for info, label in states]
    assert chosen == [f"Search {q}", "Clicked on link 0", "Find in page: Philadelphia",
                      "Quote: It was published in Philadelphia.", "End: Answer"]  # the rejected click is not taught
    assert stats == {"episodes": 1, "steps": 5, "added_candidates": 1, "skipped_episodes": 0}
    assert states[2][0]["candidates"][-1]["command"] == "End: Decline"  # the added one goes before Decline


def test_a_corrupt_policy_artifact_is_one_clear_line_naming_the_fix(tmp_path, capsys):
    import json

    from citeagent.cli import main

    corpus = tmp_path / "docs.jsonl"
    corpus.write_text(json.dumps({"id": "a", "title": "A", "url": "https://example.org/a", "text": "Alpha is a city."}) + "\n")
    bad = tmp_path / "policy"
    bad.mkdir()
    (bad / "policy.json").write_text("{not json")
    (bad / "scorer.safetensors").write_bytes(b"")
    rc = main(["ask", "Where is Alpha?", "--corpus", str(corpus), "--policy", str(bad)])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert "corrupt" in err and "citeagent train cpu-bc" in err


def test_a_missing_answer_reader_is_one_clear_error_naming_the_rebuild(tmp_path):
    from citeagent.policies.candidate import CandidatePolicyConfig, propose_answers
    from citeagent.policies.reader import ReaderError

    config = CandidatePolicyConfig(reader=str(tmp_path / "no_reader"))
    with pytest.raises(ReaderError, match="reader artifact is missing.*citeagent train reader"):
        propose_answers(config, [("Who?", [{"n": 1, "text": "Ada wrote it."}])])
    assert propose_answers(CandidatePolicyConfig(reader=""), [("Who?", [])]) == [None]
