"""Oracle-evidence reading: how well the answer reader answers a HotpotQA question when its quotes
are the question's gold supporting sentences (so only reading is measured, not browsing)."""
from __future__ import annotations

from citeagent.eval.answer_metrics import exact_match, hotpot_answer_prf, normalize_answer
from citeenv.sources.hotpotqa import wikipedia_url


def gold_quotes(record: dict) -> list[dict]:
    """The record's supporting sentences as numbered quotes {n, title, url, text}, in
    supporting_facts order; a fact naming a sentence the context lacks is left out."""
    paragraphs = {str(title): sentences for title, sentences in record["context"]}
    quotes = []
    for title, sent_id in record.get("supporting_facts") or []:
        sentences = paragraphs.get(str(title)) or []
        if 0 <= int(sent_id) < len(sentences) and sentences[int(sent_id)].strip():
            quotes.append({"n": len(quotes) + 1, "title": str(title), "url": wikipedia_url(str(title)),
                           "text": sentences[int(sent_id)]})
    return quotes


def is_yes_no(answer: str) -> bool:
    return normalize_answer(answer) in ("yes", "no")


def reading_figures(reader, records: list[dict], k: int = 8, batch: int = 32) -> dict:
    """Answer EM/F1 (HotpotQA's definitions) of the reader's best candidate, the yes/no accuracy
    on yes/no questions, and how often a gold answer is among the top k candidates."""
    scored = [(r, q) for r in records if (q := gold_quotes(r))]
    em = f1 = in_top_k = 0.0
    yes_no = yes_no_right = 0
    for lo in range(0, len(scored), batch):
        part = scored[lo:lo + batch]
        for (record, _), cands in zip(part, reader.candidates_batch([(r["question"], q) for r, q in part], k=k)):
            gold = record["answer"]
            best = cands[0].text if cands else ""
            em += exact_match(best, gold)
            f1 += hotpot_answer_prf(best, gold)[0]
            in_top_k += float(any(exact_match(c.text, gold) for c in cands))
            if is_yes_no(gold):
                yes_no += 1
                yes_no_right += exact_match(best, gold)
    n = len(scored)
    return {
        "questions": n,
        "em": round(em / n, 4) if n else None,
        "f1": round(f1 / n, 4) if n else None,
        f"gold_in_top_{k}": round(in_top_k / n, 4) if n else None,
        "yes_no_questions": yes_no,
        "yes_no_accuracy": round(yes_no_right / yes_no, 4) if yes_no else None,
        "without_quotes": len(records) - n,
    }
