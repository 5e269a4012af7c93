"""`citeagent train rules`: the rule-violation classifier, one multi-label head on frozen MiniLM
embeddings of (question, answer), bootstrapped from a seed set and grown with the labelling app's
per-rule labels.

The seed set (citeagent/safety/rule_seed.jsonl) was written by hand for this project: for every rule,
requests that break it (question alone, for the rules a request can break) and answers that break
it, next to hard negatives on the same topics (refusals, safe answers about medicine, weapons,
hate, privacy) so that the classifier learns the rule, not the topic. Ordinary negatives come from
the training part of the shared HotpotQA split (never its held-out questions): each question alone
and with its gold answer citing a gold supporting sentence. Exported app judgements (`citeagent
label export`) add each answer with the rules the annotator marked (none marked: a negative).

Split: by question, a fixed fraction held out for the test; every answer to one question lands on
the same side, so a refusal and a violation of the same request are never split up.
"""
from __future__ import annotations

import hashlib
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from citeagent.answer import Answer, Quote
from citeagent.safety import RULES_CLF_DIR as DEFAULT_DIR

SEED_FILE = Path(__file__).resolve().parents[1] / "safety" / "rule_seed.jsonl"


@dataclass
class RulesConfig:
    out: str = field(default=str(DEFAULT_DIR), metadata={"help": "where the classifier is saved (default: the one "
                                                                  "shipped with citeagent)"})
    seed_file: str = field(default=str(SEED_FILE), metadata={"help": "JSONL of {question, answer, rules}"})
    labels: str = field(default="", metadata={"help": "a `citeagent label export` JSONL whose per-rule labels are "
                                                      "added (empty: none)"})
    rules: str = field(default="", metadata={"help": "rule file (empty: citeagent/safety/rules.toml)"})
    hotpot_negatives: int = field(default=150, metadata={"help": "HotpotQA training questions used as negatives"})
    pydocs_questions: str = field(default="", metadata={"help": "generated pydocs questions (`citeagent train "
                                                                "pydocs-questions --out FILE`) whose questions and "
                                                                "answers join the negatives (empty: none)"})
    pydocs_negatives: int = field(default=150, metadata={"help": "pydocs questions used as negatives"})
    test_frac: float = field(default=0.25, metadata={"help": "fraction of questions held out for the test"})
    threshold: float = field(default=0.5, metadata={"help": "P(breaks rule) at and above which a rule is flagged"})
    hidden: int = 0
    weight_decay: float = 0.01
    epochs: int = 300
    lr: float = 0.01
    encoder: str = "minilm"
    seed: int = 0
    n_boot: int = 1000

    def __post_init__(self):
        if not 0 < self.test_frac < 1:
            raise ValueError("--test-frac must be between 0 and 1")
        if not 0 < self.threshold < 1:
            raise ValueError("--threshold must be between 0 and 1")
        if self.pydocs_questions and not Path(self.pydocs_questions).is_file():
            raise ValueError(f"--pydocs-questions {self.pydocs_questions}: no such file; make it with "
                             "`citeagent train pydocs-questions --out FILE`")


@dataclass
class Example:
    question: str
    answer: Answer
    rules: list[str]
    source: str


def read_seed(path: str | Path, rules) -> list[Example]:
    """The seed file; a bad line stops training with the file, the line and what is wrong."""
    from citeenv.jsonl import iter_jsonl

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No rule seed file at {path}.")
    out = []
    for n, row in iter_jsonl(path):
        q, a, marked = row.get("question"), row.get("answer", ""), row.get("rules")
        if not isinstance(q, str) or not q.strip() or not isinstance(a, str) or not isinstance(marked, list):
            raise ValueError(f"{path} line {n}: needs a question (text), an answer (text, may be empty) and rules (a "
                             "list). Each line is {\"question\": ..., \"answer\": ..., \"rules\": [...]}.")
        checked = rules.check_ids(marked, where=f"{path} line {n}")
        out.append(Example(q, Answer(q, a), checked, "seed"))
    return out


def read_app_labels(path: str | Path, rules) -> list[Example]:
    """Both answers of every exported judgement with their marked rules; judgements exported before
    per-rule labels existed (no rules_0/rules_1) are left out rather than read as 'breaks none'."""
    from citeagent.reward.sources import load_webgpt_file

    comps, _stats = load_webgpt_file(path, strict=False)
    out = []
    for c in comps:
        if "rules_0" not in c.meta or "rules_1" not in c.meta:
            continue
        for ans, key in ((c.answer_0, "rules_0"), (c.answer_1, "rules_1")):
            out.append(Example(c.question, ans, rules.check_ids(c.meta[key], where=f"{path} {c.id}"), "app"))
    return out


def hotpot_negatives(n: int, seed: int) -> list[Example]:
    """Benign questions and cited answers from the training part of the shared HotpotQA split."""
    import random

    from citeagent.eval.datasets import hotpotqa_split
    from citeenv.sources.hotpotqa import read_hotpotqa_records

    if n <= 0:
        return []
    train, _heldout = hotpotqa_split(list(read_hotpotqa_records()))
    out = []
    for rec in random.Random(seed).sample(train, min(n, len(train))):
        paragraphs = dict((t, s) for t, s in rec["context"])
        title, sid = rec["supporting_facts"][0]
        sentence = paragraphs.get(title, [""])[sid] if sid < len(paragraphs.get(title, [])) else ""
        q = rec["question"]
        out.append(Example(q, Answer(q, ""), [], "hotpotqa"))
        out.append(Example(q, Answer(q, f"{rec['answer']} [1].", [Quote(1, title, "", sentence.strip())]), [], "hotpotqa"))
    return out


def pydocs_negatives(path: str, n: int, seed: int) -> list[Example]:
    """Benign questions about code and their cited answers, from the generated pydocs questions
    (leakage-guarded against the pydocs QA set the over-flagging is measured on). HotpotQA's trivia
    alone taught the classifier that any technical question is suspect."""
    import random

    from citeagent.data.gold_questions import load_gold_questions

    if not path or n <= 0:
        return []
    out = []
    for q in random.Random(seed).sample(load_gold_questions(path), n):
        gold = q["support"][0]
        out.append(Example(q["question"], Answer(q["question"], ""), [], "pydocs"))
        out.append(Example(q["question"], Answer(q["question"], f"{q['answers'][0]} [1].",
                                                 [Quote(1, gold.get("title", ""), gold.get("url", ""), gold["text"])]),
                           [], "pydocs"))
    return out


def is_test(question: str, frac: float, seed: int) -> bool:
    h = hashlib.sha256(f"{seed}:{question.strip().lower()}".encode()).hexdigest()
    return int(h[:12], 16) / float(16 ** 12) < frac


def evaluate(probs, examples: list[Example], rule_ids: list[str], threshold: float, n_boot: int, seed: int) -> dict:
    """Held-out accuracy: whether any rule is flagged (the decision declining rests on), the exact
    set of rules, and each rule's accuracy, precision and recall."""
    from citeagent.eval.bootstrap import bootstrap_ci

    flagged = [{r for r, p in zip(rule_ids, row) if p >= threshold} for row in probs]
    gold = [set(e.rules) for e in examples]
    any_ok = [float(bool(f) == bool(g)) for f, g in zip(flagged, gold)]
    exact = [float(f == g) for f, g in zip(flagged, gold)]
    per_rule = {}
    for r in rule_ids:
        tp = sum(1 for f, g in zip(flagged, gold) if r in f and r in g)
        fp = sum(1 for f, g in zip(flagged, gold) if r in f and r not in g)
        fn = sum(1 for f, g in zip(flagged, gold) if r not in f and r in g)
        per_rule[r] = {"accuracy": sum(1 for f, g in zip(flagged, gold) if (r in f) == (r in g)) / len(gold),
                       "precision": tp / (tp + fp) if tp + fp else None, "recall": tp / (tp + fn) if tp + fn else None,
                       "positives": tp + fn}
    return {"n": len(examples), "n_violating": sum(1 for g in gold if g),
            # what always answering "breaks no rule" scores: the accuracy to beat
            "majority_baseline": sum(1 for g in gold if not g) / len(gold),
            "any_violation_accuracy": bootstrap_ci(any_ok, n_resamples=n_boot, seed=seed),
            "exact_set_accuracy": bootstrap_ci(exact, n_resamples=n_boot, seed=seed), "per_rule": per_rule}


def fit_multilabel(x, y, hidden: int, weight_decay: float, epochs: int, lr: float, seed: int):
    """One head, one output per rule, binary cross-entropy; rare rules are weighted up so that a
    rule with ten examples is not learned as 'never'."""
    import torch
    import torch.nn.functional as F

    from citeagent.safety.heads import make_head

    torch.manual_seed(seed)
    head = make_head(x.shape[1], y.shape[1], hidden)
    pos = y.sum(0)
    pos_weight = ((len(y) - pos) / pos.clamp(min=1)).clamp(max=20.0)
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
    for _ in range(epochs):
        opt.zero_grad()
        F.binary_cross_entropy_with_logits(head(x), y, pos_weight=pos_weight).backward()
        opt.step()
    head.eval()
    return head


def train_rule_classifier(cfg: RulesConfig, log=lambda m: print(m, file=sys.stderr)) -> dict:
    import torch

    from citeagent.safety.features import TextEncoder, features
    from citeagent.safety.heads import save_head
    from citeagent.safety.rules import load_rules

    t0 = time.perf_counter()
    rules = load_rules(cfg.rules or None)
    examples = read_seed(cfg.seed_file, rules)
    if cfg.labels:
        examples += read_app_labels(cfg.labels, rules)
    examples += hotpot_negatives(cfg.hotpot_negatives, cfg.seed)
    examples += pydocs_negatives(cfg.pydocs_questions, cfg.pydocs_negatives, cfg.seed)
    train = [e for e in examples if not is_test(e.question, cfg.test_frac, cfg.seed)]
    test = [e for e in examples if is_test(e.question, cfg.test_frac, cfg.seed)]
    counts = {r: sum(r in e.rules for e in examples) for r in rules.ids}
    log(f"{len(examples)} examples ({', '.join(f'{s}: {sum(e.source == s for e in examples)}' for s in ('seed', 'app', 'hotpotqa', 'pydocs'))}); "
        f"{len(train)} train, {len(test)} test; positives per rule {counts}")
    if not train or not test:
        raise ValueError("Too few examples to hold some out; add seed lines or labels.")
    encoder = TextEncoder(cfg.encoder)

    def xy(ex):
        x = torch.from_numpy(features(encoder, "qa", [e.question for e in ex], [e.answer for e in ex]))
        y = torch.tensor([[float(r in e.rules) for r in rules.ids] for e in ex])
        return x, y

    (xtr, ytr), (xte, _yte) = xy(train), xy(test)
    head = fit_multilabel(xtr, ytr, cfg.hidden, cfg.weight_decay, cfg.epochs, cfg.lr, cfg.seed)
    with torch.no_grad():
        probs = torch.sigmoid(head(xte)).tolist()
    result = evaluate(probs, test, rules.ids, cfg.threshold, cfg.n_boot, cfg.seed)
    # the shipped head learns from every example; its test accuracy is the held-out run's above
    x_all, y_all = torch.cat([xtr, xte]), torch.cat([ytr, _yte])
    final = fit_multilabel(x_all, y_all, cfg.hidden, cfg.weight_decay, cfg.epochs, cfg.lr, cfg.seed)
    seconds = time.perf_counter() - t0
    meta = {"kind": "rule-classifier", "features": "qa", "encoder": cfg.encoder, "dim": int(xtr.shape[1]),
            "outputs": len(rules.ids), "hidden": cfg.hidden, "rules": rules.ids,
            "thresholds": {r: cfg.threshold for r in rules.ids}, "examples": {"train": len(train), "test": len(test),
            "positives_per_rule": counts}, "test": result, "config": asdict(cfg), "seconds": round(seconds, 1),
            "note": "test = a head fitted on the train questions only; the saved head is refitted on all examples"}
    save_head(cfg.out, final, meta)
    a = result["any_violation_accuracy"]
    log(f"held-out: any-violation accuracy {a['mean']:.3f} [{a['ci_low']:.3f}, {a['ci_high']:.3f}] on {a['n']} "
        f"examples ({result['n_violating']} violating; always 'no violation' scores {result['majority_baseline']:.3f}); exact rule set {result['exact_set_accuracy']['mean']:.3f}; "
        f"saved to {cfg.out}")
    return meta


def run_rules(cfg: RulesConfig) -> int:
    meta = train_rule_classifier(cfg)
    print(json.dumps({"examples": meta["examples"], "test": {k: v for k, v in meta["test"].items() if k != "per_rule"},
                      "per_rule": meta["test"]["per_rule"]}, indent=2))
    return 0
