"""The support judge: its training pairs, a tiny training run that saves and reports held-out
accuracy, loading (and the message when it is missing), and NLI label handling."""
import json
import random

import pytest

from citeagent.eval.datasets import hotpotqa_split
from citeagent.eval.judge import ClassifierJudge, JudgeNotFound, claim_text, evidence_text, load_judge
from citeagent.train.judge import JudgeTrainConfig, pairs_for_record, train_judge

RECORD = {
    "_id": "r1", "type": "comparison", "question": "Were Ann Lee and Bo Chan both painters?", "answer": "yes",
    "supporting_facts": [["Ann Lee", 0], ["Bo Chan", 1]],
    "context": [
        ["Ann Lee", ["Ann Lee was a painter.", " She lived in Oslo."]],
        ["Bo Chan", ["Bo Chan was born in 1950.", " Chan was a painter of landscapes."]],
        ["Cy Dorn", ["Cy Dorn is a footballer.", " He plays for Lyon."]],
    ],
}


def test_pairs_for_a_comparison_record():
    pairs = pairs_for_record(RECORD, random.Random(0))
    kinds = {p.kind: p for p in pairs}
    assert set(kinds) == {"gold", "gold+noise", "distractors", "off-topic", "wrong-answer", "partial", "non-answer"}
    assert [p.label for p in pairs] == [{"gold": 1, "gold+noise": 1}.get(p.kind, 0) for p in pairs]
    gold = kinds["gold"]
    assert gold.evidence == "Ann Lee: Ann Lee was a painter.\nBo Chan: Chan was a painter of landscapes."
    assert gold.claim.startswith("Were Ann Lee and Bo Chan both painters? Answer: Yes")
    assert "Answer: No" in kinds["wrong-answer"].claim  # yes/no answers are flipped
    assert "Cy Dorn" in kinds["distractors"].evidence and "Bo Chan:" not in kinds["distractors"].evidence
    # comparison: one paragraph alone cannot support the answer
    assert kinds["partial"].evidence.count("\n") == 0
    # a yes/no question is answered by no single sentence
    assert kinds["non-answer"].claim.split("Answer: ")[1] in ("Ann Lee was a painter.", "Chan was a painter of landscapes.")


def test_pairs_for_a_bridge_record_use_the_paragraph_without_the_answer_as_partial():
    rec = dict(RECORD, type="bridge", question="Where did the painter Ann Lee live?", answer="Oslo",
               supporting_facts=[["Ann Lee", 1], ["Bo Chan", 1]])
    pairs = {p.kind: p for p in pairs_for_record(rec, random.Random(0))}
    assert pairs["partial"].evidence.startswith("Bo Chan:")  # Ann Lee's holds "Oslo"
    assert pairs["answer-sentence"].claim.endswith("Answer: She lived in Oslo.")
    assert pairs["non-answer"].claim.endswith("Answer: Chan was a painter of landscapes.") and pairs["non-answer"].label == 0
    assert pairs["wrong-answer"].claim.split("Answer: ")[1].rstrip(".") in ("Bo Chan", "Cy Dorn")
    assert "Oslo" not in pairs["wrong-answer"].claim.split("Answer:")[1]


def test_split_holds_out_the_first_questions():
    recs = [{"_id": str(i)} for i in range(10)]
    train, held = hotpotqa_split(recs, 0.3)
    assert [r["_id"] for r in held] == ["0", "1", "2"] and len(train) == 7


def test_claim_and_evidence_forms():
    assert claim_text(" Q? ", "It is X. ") == "Q? Answer: It is X."
    assert evidence_text([("T", "a"), ("", "b")]) == "T: a\nb"


def test_missing_default_judge_suggests_judge_none_and_how_to_train_it(tmp_path, monkeypatch):
    import citeagent.eval.judge

    # conftest gives the tests a fresh CITEAGENT_HOME, where no judge has been trained; and no shipped one
    monkeypatch.setattr(citeagent.eval.judge, "SHIPPED_JUDGE_DIR", tmp_path / "no-shipped-judge")
    with pytest.raises(JudgeNotFound) as e:
        load_judge("default")
    assert "citeagent train judge" in str(e.value) and "--judge none" in str(e.value)
    assert load_judge("none") is None


@pytest.fixture(scope="module")
def tiny_judge(tmp_path_factory):
    out = tmp_path_factory.mktemp("judge")
    meta = train_judge(JudgeTrainConfig(out=str(out), limit=10, max_steps=2, batch_size=4, max_length=64, threads=1),
                       progress=False)
    return out, meta


def test_tiny_training_saves_weights_and_heldout_accuracy(tiny_judge):
    out, meta = tiny_judge
    saved = json.loads((out / "judge_meta.json").read_text())
    assert saved["steps"] == 2
    assert saved["n_heldout_questions"] == 3 and saved["n_train_questions"] == 7
    assert 0.0 <= saved["heldout_accuracy"] <= 1.0
    assert saved["heldout"]["n_pairs"] == sum(v["n"] for v in saved["heldout"]["by_kind"].values())
    assert len(saved["train_question_ids"]) == 7
    judge = load_judge(str(out))
    assert isinstance(judge, ClassifierJudge) and judge.meta["heldout_accuracy"] == saved["heldout_accuracy"]
    probs = judge.support_probs([("Ann Lee: Ann Lee was a painter.", "Q? Answer: yes"), ("x", "y")])
    assert all(0.0 < p < 1.0 for p in probs) and probs[0] != probs[1]
    assert judge.support_probs([("x", "y")]) == [probs[1]]  # cached, same value


def test_nli_models_use_their_entailment_class(tmp_path):
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    from citeenv.search.embedder import minilm_path

    def save(labels, where):
        cfg = AutoConfig.from_pretrained(minilm_path(), num_labels=len(labels), id2label=dict(enumerate(labels)),
                                         label2id={l: i for i, l in enumerate(labels)})
        AutoModelForSequenceClassification.from_config(cfg).save_pretrained(where)
        AutoTokenizer.from_pretrained(minilm_path()).save_pretrained(where)
        return str(where)

    judge = ClassifierJudge(save(["contradiction", "neutral", "entailment"], tmp_path / "nli"))
    assert judge._label == 2
    p = judge.support_probs([("a", "b")])[0]
    assert 0.0 < p < 1.0
    with pytest.raises(ValueError, match="none is named"):
        ClassifierJudge(save(["a", "b", "c"], tmp_path / "other"))


def test_the_run_summary_rounds_the_judges_accuracy_and_says_when_it_is_unknown():
    from citeagent.eval.cli import format_summary

    run = {"n_questions": 3, "out": "runs/eval/x", "metrics": {}}
    assert "judge: support (held-out accuracy 0.389)" in format_summary(run | {"judge": {"name": "support", "heldout_accuracy": 7 / 18}})
    # A judge named by the user (an NLI model from a hub) comes with no accuracy of ours.
    assert "judge: nli (held-out accuracy unknown)" in format_summary(run | {"judge": {"name": "nli"}})
