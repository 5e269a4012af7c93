"""The extractive answer reader: given a question and the verbatim quotes the browsing policy
collected, propose short answers, each a span of one quote (or "yes"/"no"), with the quotes
that support it.

The model is MiniLM-L6 (a 6-layer BERT) with a LoRA delta and two small heads, reading one
quote at a time as "[CLS] question [SEP] quote [SEP]":
- start/end logits over the tokens; the span [CLS]..[CLS] means "no answer in this quote"
  (SQuAD 2 style), so a quote without the answer puts its mass there;
- an answer-type head on [CLS] over (span, yes, no).
Candidates of one call are one distribution over answers, in log space: "yes"/"no" get the type
head's probability averaged over the quotes; a span gets P(span) x P(its quote holds the answer,
normalised over the quotes; 1 - the [CLS] span's probability) x P(start) x P(end) given it does.

The shipped artifact (citeagent/artifacts/reader/) holds the LoRA delta and the heads in
reader.safetensors and the settings, training data hash and validation figures in reader.json.
"""
from __future__ import annotations

import json
import math
import os
from collections import Counter
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
from torch import nn

ARTIFACT_DIR = Path(__file__).resolve().parents[1] / "artifacts" / "reader"
WEIGHTS_FILE = "reader.safetensors"
META_FILE = "reader.json"
FORMAT_VERSION = 1
CROSSFIT_FILE = "crossfit.json"  # a cross-fitted reader's index (`citeagent train reader --folds K`)
CROSSFIT_FORMAT = "citeagent-crossfit-reader/1"
REBUILD_COMMAND = "citeagent train reader --out citeagent/artifacts/reader --seed 0"
ANSWER_TYPES = ("span", "yes", "no")
SPAN, YES, NO = range(3)
CONTEXT = 1  # the fast tokenizer's sequence id of the quote in a (question, quote) pair


class ReaderError(RuntimeError):
    """A reader artifact that cannot be used; the message names the file and how to rebuild it."""


@dataclass
class ReaderSettings:
    """What the model is and how it reads; saved with the artifact, so a loaded reader reads
    exactly as it was trained."""
    base_model: str = field(default="minilm", metadata={
        "help": "the encoder: 'minilm' (the bundled all-MiniLM-L6-v2) or a local BERT directory"})
    max_length: int = field(default=192, metadata={"help": "tokens per (question, quote) window"})
    stride: int = field(default=48, metadata={"help": "tokens shared by consecutive windows of a long quote"})
    max_windows: int = field(default=4, metadata={"help": "windows read per quote; the rest of a longer quote is not read"})
    max_span_tokens: int = field(default=12, metadata={"help": "the longest answer span, in tokens"})
    top_n: int = field(default=20, metadata={"help": "start and end positions considered per window"})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank"})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA scaling numerator"})
    lora_targets: str = field(default="query,key,value,dense", metadata={
        "help": "comma-separated names of the encoder's linear layers that get a LoRA delta"})
    lora_layers: int = field(default=3, metadata={
        "help": "only the top N encoder layers get LoRA (0: all); training computes the frozen layers below "
                "them once, not every epoch, so a small N is what makes CPU training affordable"})

    def check(self) -> None:
        if self.lora_layers < 0:
            raise ValueError(f"--lora_layers must be 0 (all) or more, got {self.lora_layers}")
        for name in ("max_length", "max_windows", "max_span_tokens", "top_n", "lora_r", "lora_alpha"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be at least 1, got {getattr(self, name)}")
        if self.max_length < 32:
            raise ValueError(f"--max_length {self.max_length} leaves no room for a question and a quote; use 64 or more")
        # A question takes at most half a window, so a window always has room for the stride.
        if not 0 <= self.stride <= self.max_length // 2 - 4:
            raise ValueError(f"--stride must be between 0 and {self.max_length // 2 - 4} (half of --max_length, "
                             f"less the special tokens), got {self.stride}")
        if not [t for t in self.lora_targets.split(",") if t.strip()]:
            raise ValueError("--lora_targets is empty; name linear layers, e.g. query,key,value,dense")


@dataclass
class AnswerCandidate:
    text: str
    score: float  # log-space; comparable across the candidates of one call
    cites: list[int]  # quote numbers: the span's quote(s); for yes/no all quotes
    kind: str  # "span" | "yes" | "no"


def format_answer(candidate: AnswerCandidate) -> str:
    """'text [n][m]': the answer with the browser's citation markers."""
    return candidate.text + " " + "".join(f"[{n}]" for n in candidate.cites)


def resolve_base_model(name: str) -> str:
    if name in ("", "minilm"):
        from citeenv.search.embedder import minilm_path

        return str(minilm_path())
    return name


def load_tokenizer(settings: ReaderSettings):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(resolve_base_model(settings.base_model), local_files_only=True)
    if not tok.is_fast:  # offsets back into the quote need the fast tokenizer
        raise ValueError(f"{settings.base_model}: the reader needs a fast tokenizer (tokenizer.json)")
    return tok


class ReaderModel(nn.Module):
    """Encoder + span head (start, end) + answer-type head on [CLS]."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder
        hidden = encoder.config.hidden_size
        self.span_head = nn.Linear(hidden, 2)
        self.type_head = nn.Linear(hidden, len(ANSWER_TYPES))

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        states = self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).last_hidden_state
        return self.heads(states)

    def heads(self, states: torch.Tensor):
        start, end = self.span_head(states).unbind(-1)
        return start, end, self.type_head(states[:, 0])

    # Training runs the encoder in two parts, the frozen layers once and the adapted ones every
    # step; the two together compute exactly what forward does (tests/test_reader.py checks it).
    def _bert(self):
        return self.encoder.get_base_model() if hasattr(self.encoder, "get_base_model") else self.encoder

    def layer_states(self, input_ids, attention_mask, token_type_ids=None, upto: int = 0):
        """The hidden states entering encoder layer `upto` (0: the embeddings' output)."""
        bert = self._bert()
        states = bert.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)
        return self.run_layers(states, attention_mask, 0, upto)

    def run_layers(self, states, attention_mask, first: int, last: int | None = None):
        from transformers.masking_utils import create_bidirectional_mask

        bert = self._bert()
        mask = create_bidirectional_mask(config=bert.config, inputs_embeds=states, attention_mask=attention_mask)
        for layer in bert.encoder.layer[first:last]:
            states = layer(states, mask)
        return states

    def head_state_dict(self) -> dict[str, torch.Tensor]:
        return {f"span_head.{k}": v for k, v in self.span_head.state_dict().items()} | {
            f"type_head.{k}": v for k, v in self.type_head.state_dict().items()}


def lora_encoder(settings: ReaderSettings, encoder: nn.Module | None = None):
    """The base encoder (loaded unless given) wrapped with a fresh LoRA delta."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModel

    from citeagent.models import quiet_loading

    if encoder is None:
        with quiet_loading():
            encoder = AutoModel.from_pretrained(resolve_base_model(settings.base_model), local_files_only=True,
                                                add_pooling_layer=False)
    targets = [t.strip() for t in settings.lora_targets.split(",") if t.strip()]
    layers = first_adapted_layer(settings, encoder.config.num_hidden_layers)
    config = LoraConfig(r=settings.lora_r, lora_alpha=settings.lora_alpha, lora_dropout=0.1, target_modules=targets,
                        bias="none", layers_to_transform=list(range(layers, encoder.config.num_hidden_layers)),
                        layers_pattern="layer")
    with quiet_loading():  # peft asks transformers a deprecated question on every wrap
        return get_peft_model(encoder, config)


def first_adapted_layer(settings: ReaderSettings, num_layers: int) -> int:
    """The lowest encoder layer with a LoRA delta; the layers below it stay frozen."""
    if settings.lora_layers == 0 or settings.lora_layers >= num_layers:
        return 0
    return num_layers - settings.lora_layers


def encode_windows(tokenizer, questions: list[str], texts: list[str], settings: ReaderSettings):
    """Tokenise (question, quote) pairs into windows; a long quote overflows into several windows
    (overflow_to_sample_mapping says whose). The question is never cut: it is bounded by the caller."""
    return tokenizer(questions, texts, truncation="only_second", max_length=settings.max_length,
                     stride=settings.stride, return_overflowing_tokens=True, return_offsets_mapping=True,
                     padding=True, return_tensors="pt")


def model_inputs(enc, rows: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """The encoder's inputs of `rows` (all windows if None) of a tokenised batch."""
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in enc]
    return {n: enc[n] if rows is None else enc[n][rows] for n in names}


def context_mask(enc) -> torch.Tensor:
    """True at the quote's tokens and at [CLS] (the "no answer" position) of every window."""
    mask = torch.zeros(enc["input_ids"].shape, dtype=torch.bool)
    for row in range(mask.shape[0]):
        for pos, sid in enumerate(enc.sequence_ids(row)):
            mask[row, pos] = sid == CONTEXT
    mask[:, 0] = True
    return mask


def masked_log_softmax(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return torch.log_softmax(logits.masked_fill(~mask, float("-inf")), dim=-1)


def best_spans(start_lp: list[float], end_lp: list[float], offsets: list[tuple[int, int]], in_quote: list[bool],
               text: str, max_span_tokens: int, top_n: int) -> list[tuple[float, str]]:
    """(log p(start) + log p(end), exact substring of `text`) for the likeliest spans of one window.

    Only quote tokens start or end a span (position 0, [CLS], is the no-answer span and is
    never an answer), a span is at most `max_span_tokens` long and never leaves the quote, and
    it starts and ends on word boundaries (not "lings" of "dumplings", nor "s" of "Arthur's")."""
    positions = [i for i, inside in enumerate(in_quote) if inside and i > 0]
    starts = sorted((i for i in positions if _starts_word(text, offsets[i][0])), key=lambda i: -start_lp[i])[:top_n]
    ends = sorted((i for i in positions if _ends_word(text, offsets[i][1])), key=lambda i: -end_lp[i])[:top_n]
    spans = []
    for s in starts:
        for e in ends:
            if s <= e < s + max_span_tokens and all(in_quote[s:e + 1]):
                piece = text[offsets[s][0]:offsets[e][1]].strip()
                if piece:
                    spans.append((start_lp[s] + end_lp[e], piece))
    return spans


def _starts_word(text: str, at: int) -> bool:
    if at == 0 or not text[at - 1].isalnum():
        return not (at >= 2 and text[at - 1] in "'’" and text[at - 2].isalnum())
    return False


def _ends_word(text: str, at: int) -> bool:
    return at >= len(text) or not text[at].isalnum()


def _quote_number(quote, position: int) -> int:
    if not isinstance(quote, dict):
        raise ValueError(f"quote {position + 1} must be a dict with 'text' (and 'n'), got {type(quote).__name__}")
    n = quote.get("n", position + 1)
    if isinstance(n, bool) or not isinstance(n, int):
        raise ValueError(f"quote {position + 1}: 'n' must be the quote's number (an int), got {n!r}")
    if not isinstance(quote.get("text"), str):
        raise ValueError(f"quote {n}: 'text' must be the quoted string, got {type(quote.get('text')).__name__}")
    return n


class Reader:
    def __init__(self, model: ReaderModel, tokenizer, settings: ReaderSettings, meta: dict | None = None,
                 batch_rows: int = 16):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.settings = settings
        self.meta = meta or {}
        self.batch_rows = batch_rows  # quotes per forward pass (bounds memory; measured in scripts/bench_reader.py)
        # A question longer than this is cut before the quote's windows are made, so that a
        # window always holds some quote.
        self.max_question_tokens = settings.max_length // 2

    @classmethod
    def load(cls, path: str | Path | None = None) -> Reader | CrossFitReader:
        """The reader saved in `path` (None: the shipped artifact in citeagent/artifacts/reader/), or
        the cross-fitted reader whose index is there."""
        if path is not None and (Path(path) / CROSSFIT_FILE).is_file():
            return load_crossfit(Path(path))
        return load_reader(ARTIFACT_DIR if path is None else Path(path))

    def candidates(self, question: str, quotes: list[dict], k: int = 8) -> list[AnswerCandidate]:
        return self.candidates_batch([(question, quotes)], k=k)[0]

    @torch.inference_mode()
    def candidates_batch(self, episodes: list[tuple[str, list[dict]]], k: int = 8) -> list[list[AnswerCandidate]]:
        """The best `k` candidates of each (question, quotes), best first; all quotes of all
        episodes go through the model together."""
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        rows = []  # (episode, quote number, question, text) per quote read
        for e, (question, quotes) in enumerate(episodes):
            if not isinstance(question, str) or not question.strip():
                raise ValueError(f"episode {e + 1}: the question is empty")
            question = self._bounded_question(question)
            seen = set()
            for i, quote in enumerate(quotes):
                n = _quote_number(quote, i)
                if n in seen:
                    raise ValueError(f"episode {e + 1}: two quotes are numbered {n}; citations need distinct numbers")
                seen.add(n)
                if quote["text"].strip():
                    rows.append((e, n, question, self._bounded_text(quote["text"])))
        windows = self._read(rows)
        return [self._rank(windows.get(e, []), k) for e in range(len(episodes))]

    def _bounded_question(self, question: str) -> str:
        ids = self.tokenizer(question, add_special_tokens=False, return_offsets_mapping=True)
        if len(ids["input_ids"]) <= self.max_question_tokens:
            return question
        return question[:ids["offset_mapping"][self.max_question_tokens - 1][1]]

    def _bounded_text(self, text: str) -> str:
        # Web quotes can be huge; only max_windows windows are read, so a character bound
        # (generous: >= 1 char a token) keeps tokenising cheap without losing what is read.
        limit = self.settings.max_windows * self.settings.max_length * 8
        return text[:limit]

    def _read(self, rows: list[tuple[int, int, str, str]]) -> dict[int, list[tuple]]:
        """Run the model over every window of every row; per episode, a list of (quote number,
        answer-type log-probs, P(the window holds the answer), [(log p(start, end | it does), text)])."""
        out: dict[int, list[tuple]] = {}
        if not rows:
            return out
        s = self.settings
        # Rows of similar length share a forward pass: padded to their longest, a mixed batch
        # would compute mostly padding.
        rows = sorted(rows, key=lambda r: len(r[2]) + len(r[3]))
        for lo in range(0, len(rows), self.batch_rows):
            chunk = rows[lo:lo + self.batch_rows]
            enc = encode_windows(self.tokenizer, [r[2] for r in chunk], [r[3] for r in chunk], s)
            owner = enc["overflow_to_sample_mapping"].tolist()
            keep, per_quote = [], Counter()
            for w, src in enumerate(owner):
                per_quote[src] += 1
                if per_quote[src] <= s.max_windows:
                    keep.append(w)
            idx = torch.tensor(keep)
            mask = context_mask(enc)[idx]
            start, end, type_logits = self.model(**model_inputs(enc, idx))
            start, end = start.float(), end.float()
            # P(no answer) is the [CLS] span's probability (geometric mean of its start and end);
            # spans are then scored given that the window holds the answer ([CLS] left out).
            null = (masked_log_softmax(start, mask)[:, 0] + masked_log_softmax(end, mask)[:, 0]) / 2
            has_answer = (1 - null.exp()).clamp_min(1e-12).tolist()
            quote_only = mask.clone()
            quote_only[:, 0] = False
            start_lp = masked_log_softmax(start, quote_only).tolist()
            end_lp = masked_log_softmax(end, quote_only).tolist()
            type_lp = torch.log_softmax(type_logits.float(), -1).tolist()
            for j, w in enumerate(keep):
                e, n, _, text = chunk[owner[w]]
                spans = best_spans(start_lp[j], end_lp[j], enc["offset_mapping"][w].tolist(), quote_only[j].tolist(),
                                   text, s.max_span_tokens, s.top_n)
                out.setdefault(e, []).append((n, type_lp[j], has_answer[j], spans))
        return out

    @staticmethod
    def _rank(windows: list[tuple], k: int) -> list[AnswerCandidate]:
        """One distribution over answers: P(yes) and P(no) are the type head's, averaged over the
        windows; a span gets P(span) x P(its window holds the answer, normalised over the
        windows) x P(start, end | it does). An answer found in several places sums them."""
        from citeagent.eval.answer_metrics import normalize_answer

        if not windows:
            return []
        p_type = [sum(math.exp(w[1][t]) for w in windows) / len(windows) for t in range(len(ANSWER_TYPES))]
        every_quote = sorted({w[0] for w in windows})
        best = {label: AnswerCandidate(label, math.log(max(p_type[t], 1e-30)), every_quote, label)
                for t, label in ((YES, "yes"), (NO, "no"))}
        total_has = sum(w[2] for w in windows)
        wording: dict[str, float] = {}  # the best single occurrence's score of each span answer
        for n, _, has_answer, spans in windows:
            base = math.log(max(p_type[SPAN], 1e-30)) + math.log(has_answer / total_has)
            for score, text in spans:
                key = normalize_answer(text)
                if not key:  # punctuation alone is no answer
                    continue
                total = base + score
                have = best.get(key)
                if have is None:
                    best[key], wording[key] = AnswerCandidate(text, total, [n], "span"), total
                    continue
                if have.kind == "span" and total > wording[key]:  # show the likeliest wording
                    have.text, wording[key] = text, total
                have.score = _log_add(have.score, total)
                if n not in have.cites:
                    have.cites = sorted(have.cites + [n])
        return sorted(best.values(), key=lambda c: -c.score)[:k]


def _log_add(a: float, b: float) -> float:
    hi, lo = max(a, b), min(a, b)
    return hi + math.log1p(math.exp(lo - hi))


# --- the artifact --------------------------------------------------------------------------

def save_reader(model: ReaderModel, settings: ReaderSettings, out: str | Path, meta: dict) -> Path:
    """Write the LoRA delta and heads (safetensors) and reader.json into `out`."""
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {f"lora.{k}": v.detach().contiguous() for k, v in get_peft_model_state_dict(model.encoder).items()}
    tensors |= {f"heads.{k}": v.detach().contiguous() for k, v in model.head_state_dict().items()}
    save_file(tensors, str(out / WEIGHTS_FILE))
    doc = {"format": FORMAT_VERSION, "settings": asdict(settings)} | meta
    (out / META_FILE).write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return out


def _broken(path: Path, why: str) -> ReaderError:
    return ReaderError(f"{path}: {why}. Rebuild the reader with `{REBUILD_COMMAND}` "
                       f"(or pass the directory a `citeagent train reader --out DIR` run wrote).")


def read_meta(directory: Path) -> dict:
    meta_path = directory / META_FILE
    if not meta_path.is_file():
        raise _broken(meta_path, "the reader artifact is missing (no such file)")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _broken(meta_path, f"not readable JSON ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_VERSION or not isinstance(meta.get("settings"), dict):
        raise _broken(meta_path, f"not a reader artifact of format {FORMAT_VERSION}")
    known = {f.name for f in fields(ReaderSettings)}
    unknown = set(meta["settings"]) - known
    if unknown:
        raise _broken(meta_path, f"unknown settings {sorted(unknown)}")
    return meta


def load_reader(directory: Path) -> Reader:
    """The reader saved in `directory`, on the base model its settings name."""
    from peft import set_peft_model_state_dict
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    meta = read_meta(directory)
    try:
        settings = ReaderSettings(**meta["settings"])
        settings.check()
    except (TypeError, ValueError) as e:
        raise _broken(directory / META_FILE, f"bad settings ({e})") from None
    weights_path = directory / WEIGHTS_FILE
    if not weights_path.is_file():
        raise _broken(weights_path, "the reader's weights are missing (no such file)")
    try:
        tensors = load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError) as e:
        raise _broken(weights_path, f"not a readable safetensors file ({e})") from None
    model = ReaderModel(lora_encoder(settings))
    lora = {k[len("lora."):]: v for k, v in tensors.items() if k.startswith("lora.")}
    heads = {k[len("heads."):]: v for k, v in tensors.items() if k.startswith("heads.")}
    expected = set(model.head_state_dict())
    if set(heads) != expected:
        raise _broken(weights_path, f"holds heads {sorted(heads)}, expected {sorted(expected)}")
    from peft import get_peft_model_state_dict

    want = get_peft_model_state_dict(model.encoder)
    if set(lora) != set(want):
        raise _broken(weights_path, f"its LoRA tensors do not match the settings in {META_FILE} "
                                    f"({len(lora)} saved, {len(want)} expected)")
    try:
        set_peft_model_state_dict(model.encoder, lora)
        model.span_head.load_state_dict({k[len("span_head."):]: v for k, v in heads.items() if k.startswith("span_head.")})
        model.type_head.load_state_dict({k[len("type_head."):]: v for k, v in heads.items() if k.startswith("type_head.")})
    except RuntimeError as e:  # shape mismatch
        raise _broken(weights_path, f"tensors do not fit the model ({str(e).splitlines()[0]})") from None
    # Merged, the delta costs nothing at inference.
    model.encoder = model.encoder.merge_and_unload()
    return Reader(model, load_tokenizer(settings), settings, meta={k: v for k, v in meta.items() if k != "settings"})


class CrossFitReader:
    """Reads each question with the fold reader that did not learn from it, and every other
    question (held-out ones, pydocs) with the full reader. Models trained on its readings (an
    answer head, a reward model, RL) then meet a reader as unsure of their training questions as
    the full reader is of new ones, instead of one that has learnt their answers."""

    def __init__(self, full: Reader, folds: list[tuple[Reader, set[str]]], meta: dict | None = None):
        self.full = full
        # keyed by the question's words: the browser collapses whitespace in the questions it is given
        self.route = {" ".join(q.split()): reader for reader, questions in folds for q in questions}
        self.meta = meta or {}

    def candidates(self, question: str, quotes: list[dict], k: int = 8) -> list[AnswerCandidate]:
        return self.candidates_batch([(question, quotes)], k=k)[0]

    def candidates_batch(self, episodes: list[tuple[str, list[dict]]], k: int = 8) -> list[list[AnswerCandidate]]:
        groups: dict[int, tuple[Reader, list[int]]] = {}
        for i, (question, _) in enumerate(episodes):
            reader = self.route.get(" ".join(question.split()), self.full)
            groups.setdefault(id(reader), (reader, []))[1].append(i)
        out: list[list[AnswerCandidate]] = [[] for _ in episodes]
        for reader, idx in groups.values():
            for i, got in zip(idx, reader.candidates_batch([episodes[i] for i in idx], k=k)):
                out[i] = got
        return out


def write_crossfit(directory: str | Path, folds: int, full: str) -> Path:
    """The index of a cross-fitted reader whose fold readers are (or will be) directory/fold<k>."""
    path = Path(directory) / CROSSFIT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")  # separate processes training folds may write it at once
    tmp.write_text(json.dumps({"format": CROSSFIT_FORMAT, "folds": folds, "full": full}, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def load_crossfit(directory: Path) -> CrossFitReader:
    path = directory / CROSSFIT_FILE
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
        folds, full = int(index["folds"]), str(index["full"])
        if index.get("format") != CROSSFIT_FORMAT or folds < 2:
            raise ValueError(f"not a {CROSSFIT_FORMAT} index")
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as e:
        raise ReaderError(f"{path}: unreadable cross-fitted reader index ({e}). Rebuild it with "
                          "`citeagent train reader --folds K --out DIR`.") from None
    readers = []
    for k in range(folds):
        fold_dir = directory / f"fold{k}"
        if not (fold_dir / META_FILE).is_file():
            raise ReaderError(f"{fold_dir}: fold {k} of the cross-fitted reader {directory} is missing. Train it with "
                              f"`citeagent train reader --folds {folds} --fold {k} --out {directory}`.")
        reader = load_reader(fold_dir)
        readers.append((reader, set(reader.meta.get("held_out_questions") or [])))
    full_reader = load_reader(ARTIFACT_DIR if full == "shipped" else Path(full))
    return CrossFitReader(full_reader, readers, meta={"folds": folds, "full": full})
