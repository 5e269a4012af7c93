"""`citeagent train reader`: train the extractive answer reader (citeagent/policies/reader.py)
on HotpotQA training questions (never the held-out ones of citeagent/eval/datasets.py).

Every training question gives one example per gold supporting sentence, read alone as its quote:
the answer span is the answer's first case-insensitive occurrence in the sentence; a sentence
without it is labelled "no answer here" (the [CLS] span), and yes/no questions label their type
and the no-answer span. A few non-supporting sentences of the gold paragraphs are added as
further no-answer examples. A fixed fraction of the training questions (chosen by a hash of
their id, so the same for every seed) is kept out of training to measure the reader on.
"""
from __future__ import annotations

import hashlib
import json
import random
import re
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from citeagent.policies.reader import ANSWER_TYPES, META_FILE, SPAN, ReaderSettings



@dataclass(kw_only=True)
class ReaderConfig(ReaderSettings):
    out: str = field(metadata={"help": "directory the reader is saved to (citeagent/artifacts/reader ships)"})
    seed: int = field(default=0, metadata={"help": "seed of initialisation, shuffling and distractor choice"})
    data: str | None = field(default=None, metadata={
        "help": "HotpotQA records (default: the shared dev file); only its training split is used"})
    valid_fraction: float = field(default=0.15, metadata={
        "help": "fraction of the training questions kept out of training to validate on"})
    limit: int | None = field(default=None, metadata={"help": "use only the first N training questions (smoke runs)"})
    distractors: int = field(default=2, metadata={
        "help": "non-supporting sentences of the gold paragraphs per question, as no-answer examples"})
    epochs: int = field(default=4, metadata={"help": "passes over the training examples"})
    batch_size: int = field(default=16, metadata={"help": "examples per optimiser step"})
    lr: float = field(default=2e-3, metadata={"help": "peak learning rate (LoRA and heads), linear warm-up and decay"})
    warmup: float = field(default=0.1, metadata={"help": "fraction of the steps spent warming up"})
    threads: int = field(default=1, metadata={"help": "torch CPU threads (1 is several times faster than 2 on a busy shared machine: measured)"})
    folds: int = field(default=0, metadata={
        "help": "0: one reader. K >= 2: a cross-fitted reader, K fold readers each trained without one K-th of the "
                "questions (out/fold<k>), so that models trained on its readings see a reader that has not learnt "
                "their questions (--valid_fraction is then unused: each fold is its reader's validation)"})
    fold: int = field(default=-1, metadata={"help": "with --folds: train this fold only (-1: all, one after another; "
                                                   "separate processes may train the folds at once)"})
    full: str = field(default="shipped", metadata={
        "help": "with --folds: the reader of every question in no fold (the held-out ones): 'shipped' or a reader directory"})

    def check(self) -> None:
        super().check()
        if not str(self.out or "").strip():
            raise ValueError("--out is empty: name the directory the reader is saved to")
        if not 0 <= self.valid_fraction < 1:
            raise ValueError(f"--valid_fraction must be in [0, 1), got {self.valid_fraction}")
        for name in ("epochs", "batch_size", "threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be at least 1, got {getattr(self, name)}")
        if self.distractors < 0:
            raise ValueError(f"--distractors must be 0 or more, got {self.distractors}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"--limit must be at least 1, got {self.limit}")
        if not self.lr > 0 or not 0 <= self.warmup < 1:
            raise ValueError(f"--lr must be positive and --warmup in [0, 1), got {self.lr} and {self.warmup}")
        if self.folds == 1 or self.folds < 0:
            raise ValueError(f"--folds must be 0 (one reader) or at least 2, got {self.folds}")
        if self.folds and not -1 <= self.fold < self.folds:
            raise ValueError(f"--fold must be -1 (all) or between 0 and {self.folds - 1}, got {self.fold}")
        if self.folds and self.full != "shipped" and not (Path(self.full) / META_FILE).is_file():
            raise ValueError(f"--full {self.full!r}: give 'shipped' or a reader directory (with {META_FILE})")

    def settings(self) -> ReaderSettings:
        return ReaderSettings(**{f.name: getattr(self, f.name) for f in fields(ReaderSettings)})


# --- data ----------------------------------------------------------------------------------

def training_records(config: ReaderConfig) -> list[dict]:
    """HotpotQA's training split (held-out questions excluded), cut to --limit."""
    from citeagent.eval.datasets import hotpotqa_split
    from citeenv.sources.hotpotqa import read_hotpotqa_records

    records = list(read_hotpotqa_records(config.data))
    train, _ = hotpotqa_split(records)
    if config.limit is not None:
        train = train[:config.limit]
    if not train:
        raise ValueError(f"{config.data or 'the shared HotpotQA file'} has no training questions "
                         "(all of its records are held out); pass --data with more records")
    return train


def is_validation(record: dict, fraction: float) -> bool:
    from citeagent.eval.datasets import hotpot_question_id

    digest = hashlib.sha1(hotpot_question_id(record).encode("utf-8")).hexdigest()
    return int(digest[:8], 16) / 0xFFFFFFFF < fraction


def fold_of(record: dict, folds: int) -> int:
    """The cross-fitting fold of a question, by a hash of its id (independent of is_validation's)."""
    from citeagent.eval.datasets import hotpot_question_id

    digest = hashlib.sha1(hotpot_question_id(record).encode("utf-8")).hexdigest()
    return int(digest[8:16], 16) % folds


def answer_type(answer: str) -> int:
    from citeagent.eval.reading import is_yes_no

    return ANSWER_TYPES.index(answer.strip().lower().rstrip(".")) if is_yes_no(answer) else SPAN


def question_examples(record: dict, distractors: int, rng: random.Random) -> list[dict]:
    """{question, text, start, end, type}: start/end are the answer's character span in text,
    None where the sentence does not hold it (the no-answer label)."""
    from citeagent.eval.reading import gold_quotes

    kind = answer_type(record["answer"])
    pattern = re.compile(re.escape(record["answer"].strip()), re.IGNORECASE)
    examples = []
    for quote in gold_quotes(record):
        found = pattern.search(quote["text"]) if kind == SPAN and record["answer"].strip() else None
        examples.append({"question": record["question"], "text": quote["text"], "type": kind,
                         "start": found.start() if found else None, "end": found.end() if found else None})
    gold = {(str(t), int(i)) for t, i in record.get("supporting_facts") or []}
    titles = {t for t, _ in gold}
    others = [s for title, sentences in record["context"] if str(title) in titles
              for i, s in enumerate(sentences) if (str(title), i) not in gold and s.strip()]
    for text in rng.sample(others, min(distractors, len(others))):
        examples.append({"question": record["question"], "text": text, "type": kind, "start": None, "end": None})
    return examples


def build_examples(records: list[dict], distractors: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    return [ex for record in records for ex in question_examples(record, distractors, rng)]


def data_hash(examples: list[dict]) -> str:
    blob = json.dumps(examples, sort_keys=True, ensure_ascii=False).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()


def check_examples(examples: list[dict], records: list[dict]) -> None:
    answered = sum(1 for e in examples if e["start"] is not None)
    span_questions = sum(1 for r in records if answer_type(r["answer"]) == SPAN)
    if not examples:
        raise ValueError("The training questions give no examples: none has a supporting sentence in its context.")
    if span_questions and not answered:
        raise ValueError("No training sentence holds its question's answer; the span head would learn nothing. "
                         "Check that --data is HotpotQA with supporting_facts.")


# --- training ------------------------------------------------------------------------------

def window_labels(enc, examples: list[dict]):
    """Start/end token labels (0 = [CLS], no answer in this window) and type labels per window."""
    import torch

    from citeagent.policies.reader import CONTEXT

    starts, ends, types = [], [], []
    for w, src in enumerate(enc["overflow_to_sample_mapping"].tolist()):
        ex = examples[src]
        types.append(ex["type"])
        s_tok = e_tok = 0
        if ex["start"] is not None:
            seq = enc.sequence_ids(w)
            offsets = enc["offset_mapping"][w].tolist()
            inside = [i for i, sid in enumerate(seq) if sid == CONTEXT]
            first = [i for i in inside if offsets[i][0] <= ex["start"] < offsets[i][1]]
            last = [i for i in inside if offsets[i][0] < ex["end"] <= offsets[i][1]]
            if first and last and first[0] <= last[-1]:
                s_tok, e_tok = first[0], last[-1]
        starts.append(s_tok)
        ends.append(e_tok)
    return torch.tensor(starts), torch.tensor(ends), torch.tensor(types)


def cache_windows(model, tokenizer, settings: ReaderSettings, examples: list[dict], first: int,
                  chunk: int = 64) -> list[tuple]:
    """(hidden states entering layer `first`, quote mask, start, end, type) per window of every
    example. The layers below `first` are frozen, so this runs once instead of every epoch."""
    import torch
    from tqdm import tqdm

    from citeagent.policies.reader import context_mask, encode_windows, model_inputs

    windows = []
    model.eval()  # no dropout baked into the cache
    with torch.no_grad(), tqdm(total=len(examples), desc="reader: frozen layers", unit="ex", file=sys.stderr) as bar:
        for lo in range(0, len(examples), chunk):
            part = examples[lo:lo + chunk]
            enc = encode_windows(tokenizer, [e["question"] for e in part], [e["text"] for e in part], settings)
            starts, ends, types = window_labels(enc, part)
            mask = context_mask(enc)
            states = model.layer_states(**model_inputs(enc), upto=first)
            for w, length in enumerate(enc["attention_mask"].sum(1).tolist()):  # padding is on the right
                windows.append((states[w, :length].clone(), mask[w, :length].clone(),
                                int(starts[w]), int(ends[w]), int(types[w])))
            bar.update(len(part))
    return windows


def length_batches(windows: list[tuple], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Shuffled batches of windows of similar length (less padding), in shuffled order."""
    order = list(range(len(windows)))
    rng.shuffle(order)
    pool = batch_size * 16
    batches = []
    for lo in range(0, len(order), pool):
        group = sorted(order[lo:lo + pool], key=lambda i: len(windows[i][0]))
        batches += [group[i:i + batch_size] for i in range(0, len(group), batch_size)]
    rng.shuffle(batches)
    return batches


def batch_loss(model, batch: list[tuple], first: int):
    import torch
    import torch.nn.functional as F

    from citeagent.policies.reader import masked_log_softmax

    length = max(len(w[0]) for w in batch)
    states = torch.zeros(len(batch), length, batch[0][0].shape[-1])
    attention = torch.zeros(len(batch), length, dtype=torch.long)
    quote = torch.zeros(len(batch), length, dtype=torch.bool)
    for i, (h, mask, *_) in enumerate(batch):
        states[i, :len(h)] = h
        attention[i, :len(h)] = 1
        quote[i, :len(h)] = mask
    starts, ends, types = (torch.tensor([w[k] for w in batch]) for k in (2, 3, 4))
    start, end, type_logits = model.heads(model.run_layers(states, attention, first))
    span_loss = (F.nll_loss(masked_log_softmax(start, quote), starts) + F.nll_loss(masked_log_softmax(end, quote), ends)) / 2
    return span_loss + F.cross_entropy(type_logits, types)


def train_reader(config: ReaderConfig) -> dict:
    import torch
    from tqdm import tqdm
    from transformers import get_linear_schedule_with_warmup

    from citeagent.eval.reading import reading_figures
    from citeagent.policies.reader import (Reader, ReaderModel, first_adapted_layer, load_tokenizer, lora_encoder,
                                           save_reader)

    config.check()
    settings = config.settings()
    t0 = time.time()
    records = training_records(config)
    if config.folds:
        valid = [r for r in records if fold_of(r, config.folds) == config.fold]
        train = [r for r in records if fold_of(r, config.folds) != config.fold]
    else:
        valid = [r for r in records if is_validation(r, config.valid_fraction)]
        train = [r for r in records if not is_validation(r, config.valid_fraction)]
    if not train:
        raise ValueError(f"--folds {config.folds}: fold {config.fold} holds every question; use more questions"
                         if config.folds else f"--valid_fraction {config.valid_fraction} leaves no question to train on")
    examples = build_examples(train, config.distractors, config.seed)
    check_examples(examples, train)
    print(f"reader: {len(train)} training questions -> {len(examples)} examples "
          f"({sum(e['start'] is not None for e in examples)} with the answer span); "
          f"{len(valid)} validation questions", file=sys.stderr)

    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    tokenizer = load_tokenizer(settings)
    model = ReaderModel(lora_encoder(settings))
    first = first_adapted_layer(settings, model.encoder.config.num_hidden_layers)
    windows = cache_windows(model, tokenizer, settings, examples, first)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=0.01)
    rng = random.Random(config.seed)
    epochs = [length_batches(windows, config.batch_size, rng) for _ in range(config.epochs)]
    steps = sum(len(e) for e in epochs)
    schedule = get_linear_schedule_with_warmup(optimizer, int(config.warmup * steps), steps)
    model.train()
    losses = []
    with tqdm(total=steps, desc="reader: training", unit="step", file=sys.stderr) as bar:
        for epoch, batches in enumerate(epochs):
            for batch in batches:
                loss = batch_loss(model, [windows[i] for i in batch], first)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                optimizer.step()
                schedule.step()
                optimizer.zero_grad()
                losses.append(loss.item())
                bar.update(1)
                bar.set_postfix(epoch=epoch + 1, loss=f"{sum(losses[-20:]) / len(losses[-20:]):.3f}")
    train_seconds = time.time() - t0
    model.eval()
    figures = reading_figures(Reader(model, tokenizer, settings), valid) if valid else {}
    meta = {
        "training": {k: v for k, v in asdict(config).items() if k not in {f.name for f in fields(ReaderSettings)}}
        | {"questions": len(train), "examples": len(examples), "windows": len(windows),
           "data_sha256": data_hash(examples), "steps": steps,
           "first_loss": round(sum(losses[:20]) / max(1, len(losses[:20])), 4),
           "final_loss": round(sum(losses[-20:]) / max(1, len(losses[-20:])), 4), "seconds": round(train_seconds, 1)},
        "validation": figures,
    }
    if config.folds:  # the questions this fold reader did not learn from, which a cross-fitted reader routes to it
        meta["held_out_questions"] = [r["question"] for r in valid]
    save_reader(model, settings, config.out, meta)
    return {"out": str(Path(config.out)), "validation": figures, "seconds": round(time.time() - t0, 1)}


def train_crossfit(config: ReaderConfig) -> dict:
    """The fold readers (all, or --fold), then the cross-fitted reader's index, which names the
    folds and the full reader (citeagent.policies.reader.load_crossfit reads it)."""
    from dataclasses import replace

    from citeagent.policies.reader import write_crossfit

    config.check()
    todo = range(config.folds) if config.fold < 0 else [config.fold]
    results = {k: train_reader(replace(config, out=str(Path(config.out) / f"fold{k}"), fold=k)) for k in todo}
    write_crossfit(config.out, config.folds, config.full)
    return {"out": config.out, "folds": {k: {"validation": r["validation"], "seconds": r["seconds"]}
                                         for k, r in results.items()}}


# --- command line --------------------------------------------------------------------------

def run_reader(config: ReaderConfig) -> int:
    """`citeagent train reader` (registered in citeagent/train/cli.py)."""
    print(json.dumps(train_crossfit(config) if config.folds else train_reader(config), indent=2))
    return 0
