"""A programmatic gold judge on HotpotQA and the synthetic comparisons it labels.

Gao et al. (2022) study reward over-optimisation with a "gold" reward standing in for humans:
here it is the answer's F1 against HotpotQA's gold answer plus the recall of the gold supporting
sentences among its quotes. Two answers sampled for the same question are compared by that score,
which gives unlimited, perfectly consistent labels to train a proxy reward model on and to measure
how far the proxy drifts from the gold judge when a policy is optimised against it.
"""
from __future__ import annotations

import random
import re

from citeagent.answer import Answer, Quote
from citeagent.eval.answer_metrics import hotpot_answer_prf
from citeagent.eval.evidence_metrics import supporting_fact_metrics
from citeagent.reward.schema import Comparison, answers_identical

ANSWER_WEIGHT = 0.5  # the rest is supporting-fact recall
_WS = re.compile(r"\s+")


def read_hotpot_records(limit: int | None = None) -> list[dict]:
    """HotpotQA dev (distractor) records in the official schema, from the shared data."""
    from citeenv.sources.hotpotqa import read_hotpotqa_records

    return list(read_hotpotqa_records(split="validation", limit=limit))


def _norm(text: str) -> str:
    return _WS.sub(" ", text).strip().lower()


def _paragraphs(record: dict) -> dict[str, list[str]]:
    return {title: sents for title, sents in record["context"]}


def quoted_facts(answer: Answer, record: dict) -> set[tuple[str, int]]:
    """(title, sentence id) of every context sentence a quote covers: the quote contains the
    sentence, or the sentence contains a quote that is at least half of it."""
    paras = _paragraphs(record)
    out = set()
    for q in answer.quotes:
        qt = _norm(q.text)
        if not qt:
            continue
        for title, sents in paras.items():
            if q.title and _norm(q.title) != _norm(title):
                continue
            for sid, sent in enumerate(sents):
                st = _norm(sent)
                if st and (st in qt or (qt in st and len(qt) >= 0.5 * len(st))):
                    out.add((title, sid))
    return out


def gold_score(answer: Answer, record: dict) -> dict:
    """The gold judge: answer F1 (HotpotQA's definition) and gold supporting-fact recall."""
    if answer.declined:
        f1 = 0.0
    else:
        f1 = hotpot_answer_prf(answer.plain_text(), record["answer"])[0]
    gold = {(t, int(s)) for t, s in record["supporting_facts"]}
    recall = supporting_fact_metrics(quoted_facts(answer, record), gold)["sp_recall"]
    return {"answer_f1": f1, "sp_recall": recall, "score": ANSWER_WEIGHT * f1 + (1 - ANSWER_WEIGHT) * recall}


def judge_pair(a: Answer, b: Answer, record: dict) -> tuple[float, dict, dict]:
    """score_0 in [-1, 1] for answer a over b: the gold score difference; equal scores are a tie."""
    ga, gb = gold_score(a, record), gold_score(b, record)
    diff = ga["score"] - gb["score"]
    return (0.0 if abs(diff) < 1e-9 else max(-1.0, min(1.0, diff))), ga, gb


# --- a stand-in policy: answers of varied quality sampled from the record ---------------------------


def _wiki_url(title: str) -> str:
    return "https://en.wikipedia.org/wiki/" + title.replace(" ", "_")


def sample_answer(record: dict, rng: random.Random) -> Answer:
    """One cited answer of random quality: the gold answer or a wrong entity, quoting gold
    supporting sentences, distractor sentences or a mix, as a weak sampled policy would."""
    paras = _paragraphs(record)
    gold_facts = [(t, int(s)) for t, s in record["supporting_facts"] if t in paras and int(s) < len(paras[t])]
    others = [(t, i) for t, sents in paras.items() for i in range(len(sents)) if (t, i) not in set(gold_facts) and sents[i].strip()]
    gold_answer = str(record["answer"])
    if rng.random() < 0.5:
        text = gold_answer
    elif gold_answer.lower() in ("yes", "no"):
        text = "no" if gold_answer.lower() == "yes" else "yes"
    else:
        wrong = [t for t in paras if _norm(t) != _norm(gold_answer)]
        text = rng.choice(wrong) if wrong else gold_answer
    n_quotes = rng.choice([1, 2, 2, 3])
    facts = []
    for _ in range(n_quotes):
        pool = gold_facts if (rng.random() < 0.5 and gold_facts) else others
        if pool:
            facts.append(rng.choice(pool))
    facts = list(dict.fromkeys(facts))
    quotes = [Quote(n=i, title=t, url=_wiki_url(t), text=paras[t][s].strip()) for i, (t, s) in enumerate(facts, start=1)]
    markers = "".join(f"[{q.n}]" for q in quotes)
    template = rng.choice(["{a} {m}.", "The answer is {a} {m}.", "{a}.{m}"])
    return Answer(question=record["question"], text=template.format(a=text, m=markers).strip(), quotes=quotes)


def synthetic_comparisons(records: list[dict], pairs_per_question: int = 2, seed: int = 0) -> list[Comparison]:
    """Gold-judge-labelled comparisons of two sampled answers per pair (Gao et al. 2022's setup)."""
    from citeagent.eval.datasets import hotpot_question_id

    out = []
    for record in records:
        # Not the raw `_id`: some records have none, and they must not share one group (the
        # train/held-out split is by group) or one random stream.
        qid = hotpot_question_id(record)
        rng = random.Random(f"{seed}:{qid}")
        made = 0
        for _attempt in range(pairs_per_question * 5):
            if made >= pairs_per_question:
                break
            a, b = sample_answer(record, rng), sample_answer(record, rng)
            if answers_identical(a, b):
                continue
            score, ga, gb = judge_pair(a, b, record)
            out.append(Comparison(
                question=record["question"], answer_0=a, answer_1=b, score_0=score, source="hotpotqa-synth",
                id=f"{qid}:{made}", group=qid, meta={"gold_0": ga, "gold_1": gb},
            ))
            made += 1
    return out


def heldout_question_rows(comps: list[Comparison], records: list[dict] | None = None) -> list[Comparison]:
    """The comparisons whose question is one of HotpotQA's held-out evaluation questions, whatever
    source they came from. A reward model that trains on them has seen those questions' answers
    judged, so best-of-n's evaluation on them would measure its memory. With no HotpotQA records
    to read (no shared data, no hub) there is nothing to check against."""
    from citeagent.eval.datasets import hotpotqa_split, question_key
    from citeenv.corpus import CorpusError

    if records is None:
        try:
            records = read_hotpot_records()
        except (FileNotFoundError, CorpusError):
            return []
    # The project's one rule for "the same question" (whitespace collapsed, case ignored), which
    # --exclude-questions and the data set loaders use too.
    held = {question_key(r["question"]) for r in hotpotqa_split(records)[1]}
    return [c for c in comps if question_key(c.question) in held]


def gold_comparisons_from_answers(answers_by_question: dict[str, list[Answer]], records: list[dict], where: str = "",
                                  max_pairs_per_question: int = 6) -> list[Comparison]:
    """Label pairs of a real policy's sampled answers (two or more per question, as
    sources.read_policy_answers groups a JSONL of them; `where` names that file) with the gold judge.
    Answers whose question is not a HotpotQA question are an error. Six pairs is every pair of four
    samples (InstructGPT trains on all K-choose-2 pairs of a prompt)."""
    from citeagent.eval.datasets import hotpot_question_id, question_key

    # The browser collapses whitespace in the question it shows; some HotpotQA questions have runs of it.
    by_question = {question_key(r["question"]): r for r in records}
    out = []
    for question, answers in answers_by_question.items():
        record = by_question.get(question_key(question))
        if record is None:
            raise ValueError(
                f"{where}: the question {question[:80]!r} is not in the HotpotQA records, so the gold judge "
                "cannot label its answers. Use answers to HotpotQA dev questions."
            )
        made, qid = 0, hotpot_question_id(record)
        for i in range(len(answers)):
            for j in range(i + 1, len(answers)):
                if made >= max_pairs_per_question:
                    break
                score, ga, gb = judge_pair(answers[i], answers[j], record)
                out.append(Comparison(question=question, answer_0=answers[i], answer_1=answers[j], score_0=score,
                                      source="hotpotqa-gold", id=f"{qid}:{i}:{j}", group=qid,
                                      meta={"gold_0": ga, "gold_1": gb}))
                made += 1
    return out
