"""Training the offline support judge: a MiniLM cross-encoder that reads (evidence, claim) and
says whether the evidence supports the claim, trained on HotpotQA's gold supporting sentences.

Pairs per question (claim = `claim_text(question, statement)`):

| kind | evidence | statement | label |
| --- | --- | --- | --- |
| gold | all gold supporting sentences | the gold answer (in a random template) | 1 |
| gold+noise | gold sentences plus a distractor sentence | the gold answer | 1 |
| answer-sentence | all gold sentences | the gold sentence that contains the answer | 1 |
| distractors | sentences of non-gold paragraphs | the gold answer | 0 |
| wrong-answer | all gold sentences | a wrong answer (flipped yes/no, or another title of the context) | 0 |
| partial | the gold paragraph that cannot carry the answer alone | the gold answer | 0 |
| off-topic | one distractor sentence | that same sentence | 0 |
| non-answer | all gold sentences | a gold sentence that does not hold the answer | 0 |

"partial" is what makes ALCE citation precision meaningful (one of two needed citations alone
does not support); "off-topic" and "non-answer" teach that a true sentence that does not answer
the question is no support for an answer (an extractive policy's typical failure: quoting the
right page's wrong sentence).

Split: questions, not pairs, are held out, by file order: the first `heldout_fraction` of the
shared HotpotQA split is never trained on, so an evaluation with `--limit` up to that many
HotpotQA questions asks the judge only about questions it never saw.
"""
from __future__ import annotations

import json
import logging
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from citeagent.eval import answer_metrics as am
from citeagent.eval.datasets import hotpot_question_id, hotpotqa_split
from citeagent.eval.judge import META_FILE, claim_text, default_judge_dir, evidence_text

log = logging.getLogger(__name__)

TEMPLATES = ["{a}", "{a}.", "The answer is {a}.", "It is {a}."]


@dataclass
class JudgeTrainConfig:
    out: str | None = field(default=None, metadata={"help": "default: $CITEAGENT_HOME/judges/support-minilm"})
    base_model: str | None = field(default=None, metadata={"help": "default: the bundled all-MiniLM-L6-v2"})
    heldout_fraction: float = 0.3
    limit: int | None = field(default=None, metadata={"help": "HotpotQA records to read (default: all)"})
    epochs: int = 1
    batch_size: int = 16
    lr: float = 5e-5
    warmup_fraction: float = 0.1
    max_length: int = 256
    max_steps: int | None = None  # stop early (tests, smoke runs)
    # The word embeddings are half of MiniLM's weights; frozen, a CPU step costs far less and
    # the classifier barely changes (the task needs new judgements, not new words).
    freeze_embeddings: bool = field(default=True, metadata={"help": "--no-freeze-embeddings also trains the word "
                                                                    "embeddings (slower on CPU)"})
    # LoRA rank (0: train the weights themselves). With LoRA only the adapters, the pooler and the
    # head are saved (about 1.5 MB in float16 instead of 90 MB), small enough that the default judge
    # ships inside the package (citeagent/eval/support_judge/) and needs no training step.
    lora_r: int = field(default=0, metadata={"help": "train LoRA adapters of this rank and save only them (the "
                                                     "shipped judge: 16); 0 trains the weights"})
    seed: int = 0
    threads: int = 2


@dataclass
class Pair:
    evidence: str
    claim: str
    label: int
    kind: str
    question_id: str


def _sentences(record: dict) -> dict[str, list[str]]:
    return {title: sents for title, sents in record["context"]}


def pairs_for_record(record: dict, rng: random.Random) -> list[Pair]:
    q, a, qid = record["question"], record["answer"], record["_id"]
    paras = _sentences(record)
    gold = [(t, paras[t][s].strip()) for t, s in record["supporting_facts"] if t in paras and 0 <= s < len(paras[t])]
    if not gold or not a.strip():
        return []
    gold_titles = list(dict.fromkeys(t for t, _ in gold))
    distractor = [(t, s.strip()) for t, sents in paras.items() if t not in gold_titles for s in sents if s.strip()]
    yes_no = am.normalize_answer(a) in ("yes", "no")

    def statement(ans: str) -> str:
        if am.normalize_answer(ans) in ("yes", "no"):
            return rng.choice(["{a}", "{a}."]).format(a=ans.strip().capitalize())
        return rng.choice(TEMPLATES).format(a=ans.strip())

    def pair(ev, stmt, label, kind):
        return Pair(evidence_text(ev), claim_text(q, stmt), label, kind, qid)

    out = [pair(gold, statement(a), 1, "gold")]
    if distractor:
        noisy = gold + [rng.choice(distractor)]
        rng.shuffle(noisy)
        out.append(pair(noisy, statement(a), 1, "gold+noise"))
        out.append(pair(rng.sample(distractor, min(3, len(distractor))), statement(a), 0, "distractors"))
        off = rng.choice(distractor)
        if not am.contains_answer(off[1], [a]):
            out.append(pair([off], off[1], 0, "off-topic"))
    holding = [] if yes_no else [s for _, s in gold if am.contains_answer(s, [a])]
    if holding:
        out.append(pair(gold, rng.choice(holding), 1, "answer-sentence"))
    # A yes/no question is answered by no single sentence; elsewhere, by those holding the answer.
    lacking = [s for _, s in gold if s not in holding]
    if lacking:
        out.append(pair(gold, rng.choice(lacking), 0, "non-answer"))
    wrong = _wrong_answer(a, paras, rng)
    if wrong:
        out.append(pair(gold, statement(wrong), 0, "wrong-answer"))
    if len(gold_titles) > 1:
        # A paragraph that does not even contain the answer cannot support it alone; for a
        # comparison question neither paragraph can.
        alone = [t for t in gold_titles if record.get("type") == "comparison"
                 or not any(am.contains_answer(s, [a]) for tt, s in gold if tt == t)]
        if alone:
            t = rng.choice(alone)
            out.append(pair([g for g in gold if g[0] == t], statement(a), 0, "partial"))
    return out


def _wrong_answer(answer: str, paras: dict, rng: random.Random) -> str | None:
    norm = am.normalize_answer(answer)
    if norm == "yes":
        return "no"
    if norm == "no":
        return "yes"
    # Another page title of the same question: same kind of entity, plausible, but wrong.
    titles = [t for t in paras if am.normalize_answer(t) != norm and norm not in am.normalize_answer(t)
              and am.normalize_answer(t) not in norm]
    return rng.choice(titles) if titles else None


def build_pairs(records: list[dict], seed: int = 0) -> list[Pair]:
    out = []
    for r in records:
        out.extend(pairs_for_record(r, random.Random(f"{seed}:{r['_id']}")))
    return out


def _length_batches(order: list[int], pairs: list[Pair], batch_size: int, rng: random.Random, pool: int = 50) -> list[list[Pair]]:
    """Batches of similar length (less padding, so a CPU step costs less): the shuffled pairs are
    cut into pools of `pool` batches, each pool sorted by length and cut into batches, and the
    batches shuffled again."""
    batches = []
    for lo in range(0, len(order), batch_size * pool):
        chunk = sorted(order[lo : lo + batch_size * pool], key=lambda j: len(pairs[j].evidence) + len(pairs[j].claim))
        batches += [[pairs[j] for j in chunk[i : i + batch_size]] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def evaluate_judge(model, tokenizer, pairs: list[Pair], max_length: int = 256, batch_size: int = 64, threshold: float = 0.5) -> dict:
    """Accuracy overall and per pair kind, at `threshold` on the sigmoid output."""
    import torch

    model.eval()
    probs = []
    with torch.no_grad():
        for i in range(0, len(pairs), batch_size):
            b = pairs[i : i + batch_size]
            enc = tokenizer([p.evidence for p in b], [p.claim for p in b], truncation=True, max_length=max_length,
                            padding=True, return_tensors="pt")
            probs.extend(torch.sigmoid(model(**enc).logits[:, 0]).tolist())
    right = [(p >= threshold) == bool(x.label) for p, x in zip(probs, pairs)]
    by_kind: dict[str, list[bool]] = {}
    for ok, x in zip(right, pairs):
        by_kind.setdefault(x.kind, []).append(ok)
    pos = [ok for ok, x in zip(right, pairs) if x.label == 1]
    neg = [ok for ok, x in zip(right, pairs) if x.label == 0]
    return {
        "accuracy": sum(right) / len(right) if right else None,
        "balanced_accuracy": (sum(pos) / len(pos) + sum(neg) / len(neg)) / 2 if pos and neg else None,
        "n_pairs": len(pairs),
        "by_kind": {k: {"accuracy": sum(v) / len(v), "n": len(v)} for k, v in sorted(by_kind.items())},
    }


LORA_TARGETS = ["query", "key", "value", "dense"]  # every linear layer of a BERT block


def _with_lora(model, r: int):
    from peft import LoraConfig, get_peft_model

    # SEQ_CLS keeps the new head trainable and saved; BERT's pooler feeds only the head, so it goes too.
    return get_peft_model(model, LoraConfig(task_type="SEQ_CLS", r=r, lora_alpha=2 * r, lora_dropout=0.0,
                                            target_modules=LORA_TARGETS, modules_to_save=["classifier", "pooler"]))


def _save_adapter(model, out: Path) -> None:
    """The adapter, pooler and head in float16: the judge scores in float32 after loading, and
    float16 halves what the repository carries."""
    from safetensors.torch import load_file, save_file

    model.save_pretrained(out)
    weights = out / "adapter_model.safetensors"
    save_file({k: v.half().contiguous() for k, v in load_file(str(weights)).items()}, str(weights))


def train_judge(config: JudgeTrainConfig | None = None, records: list[dict] | None = None, progress: bool = True) -> dict:
    """Train, measure on held-out questions, save; returns the saved meta (also judge_meta.json)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, get_linear_schedule_with_warmup

    from citeenv.search.embedder import minilm_path

    c = config or JudgeTrainConfig()
    torch.manual_seed(c.seed)
    torch.set_num_threads(c.threads)
    if records is None:
        from citeenv.sources.hotpotqa import read_hotpotqa_records

        records = list(read_hotpotqa_records(limit=c.limit))
    train_recs, held_recs = hotpotqa_split(records, c.heldout_fraction)
    train_pairs, held_pairs = build_pairs(train_recs, c.seed), build_pairs(held_recs, c.seed + 1)
    if not train_pairs:
        raise ValueError("no training pairs: the HotpotQA records have no usable supporting facts")
    base = c.base_model or str(minilm_path())
    local = Path(base).is_dir()
    tokenizer = AutoTokenizer.from_pretrained(base, local_files_only=local)
    model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1, local_files_only=local)

    if c.lora_r:
        model = _with_lora(model, c.lora_r)
    elif c.freeze_embeddings:
        for param in model.base_model.embeddings.parameters():
            param.requires_grad = False
    rng = random.Random(c.seed)
    steps_per_epoch = math.ceil(len(train_pairs) / c.batch_size)
    total = steps_per_epoch * c.epochs if c.max_steps is None else min(c.max_steps, steps_per_epoch * c.epochs)
    opt = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=c.lr, weight_decay=0.01)
    sched = get_linear_schedule_with_warmup(opt, int(total * c.warmup_fraction), total)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    t0, step, losses = time.time(), 0, []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, desc="training judge", unit="step")
    model.train()
    while step < total:
        order = list(range(len(train_pairs)))
        rng.shuffle(order)
        batches = _length_batches(order, train_pairs, c.batch_size, rng)
        for b in batches:
            if step >= total:
                break
            enc = tokenizer([p.evidence for p in b], [p.claim for p in b], truncation=True, max_length=c.max_length,
                            padding=True, return_tensors="pt")
            logits = model(**enc).logits[:, 0]
            loss = loss_fn(logits, torch.tensor([float(p.label) for p in b]))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad()
            losses.append(loss.item())
            step += 1
            if bar:
                bar.update(1)
                bar.set_postfix(loss=f"{sum(losses[-20:]) / len(losses[-20:]):.3f}")
    if bar:
        bar.close()
    train_seconds = time.time() - t0
    heldout = evaluate_judge(model, tokenizer, held_pairs, c.max_length) if held_pairs else {}

    out = Path(c.out) if c.out else default_judge_dir()
    out.mkdir(parents=True, exist_ok=True)
    if c.lora_r:
        _save_adapter(model, out)
    else:
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
    meta = {
        "kind": "support-classifier",
        "base_model": base,
        "threshold": 0.5,
        "claim_format": claim_text("<question>", "<statement>"),
        "heldout_accuracy": heldout.get("accuracy"),
        "heldout_balanced_accuracy": heldout.get("balanced_accuracy"),
        "heldout": heldout,
        "n_train_pairs": len(train_pairs),
        "n_train_questions": len(train_recs),
        "n_heldout_questions": len(held_recs),
        "train_question_ids": [hotpot_question_id(r) for r in train_recs],
        "steps": step,
        "final_loss": sum(losses[-20:]) / max(1, len(losses[-20:])),
        "train_seconds": round(train_seconds, 1),
        "config": asdict(c),
        "data": "HotpotQA dev distractor (shared split): gold supporting sentences vs. constructed negatives",
    }
    (out / META_FILE).write_text(json.dumps(meta, indent=2))
    return meta | {"path": str(out)}


# What `citeagent eval` trains on first use when there is no default judge (none trained into
# $CITEAGENT_HOME, none shipped): LoRA over the bundled MiniLM with short inputs and few steps, so
# that it takes minutes of 2 CPU cores rather than the full run's ten. Its held-out accuracy is
# measured and repeated in every summary, like any judge's.
FIRST_USE = dict(lora_r=8, lr=5e-4, max_length=160, max_steps=160, threads=2)


def build_default_judge(progress: bool = True) -> Path:
    """Train the default judge into $CITEAGENT_HOME (see FIRST_USE); its directory."""
    import sys

    from citeagent.eval.judge import JudgeNotFound, TRAIN_HINT

    out = default_judge_dir()
    print(f"citeagent: the support judge is not built yet: training it once, into {out} ({FIRST_USE['max_steps']} "
          "steps, a few minutes on 2 CPU cores; `--judge none` skips the judge metrics instead).", file=sys.stderr)
    try:
        meta = train_judge(JudgeTrainConfig(out=str(out), **FIRST_USE), progress=progress)
    except FileNotFoundError as e:  # no HotpotQA records to train on
        raise JudgeNotFound(f"The support judge is missing and cannot be built here: {e} {TRAIN_HINT}") from None
    print(f"citeagent: support judge built in {meta['train_seconds']:.0f} s; held-out accuracy "
          f"{meta['heldout_accuracy']:.3f}.", file=sys.stderr)
    return out


def run_judge(config: JudgeTrainConfig) -> int:
    """`citeagent train judge`: train, save, print the held-out accuracy."""
    meta = train_judge(config)
    print(json.dumps({k: meta[k] for k in ("path", "heldout_accuracy", "heldout_balanced_accuracy", "n_train_pairs",
                                            "steps")} | {"heldout_by_kind": meta["heldout"].get("by_kind")}, indent=2))
    return 0
