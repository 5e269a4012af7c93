"""Comparisons of the CPU agent's own answers and a reward model trained on them (WebGPT's
second stage, at CPU scale).

1. `sample_comparisons`: n sampled episodes per training question from the BC policy; every
   pair the gold judge (standing in for people, Gao et al. 2022) does not tie becomes a
   comparison in the webgpt_comparisons schema (`citeagent label enqueue` takes the file as it is,
   so people can label the same pairs in the labelling app instead).
2. `AnswerRewardModel`: the policy's own encoder (MiniLM, frozen, cached) with a scalar head over
   the question, the answer and the quotes; trained by the Bradley-Terry loss on the pairs.
   With `--reader`, three more inputs say what the extractive reader makes of the answer in its
   own quotes: embeddings tell whether a span is on topic, the reader whether it is the answer.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from citeagent.answer import Answer
from citeagent.policies.candidate import EMBED_DIM, PolicyArtifactError, words

N_RM_SCALARS = 9
N_RM_FEATURES = 3 * EMBED_DIM + N_RM_SCALARS
N_READER_FEATURES = 3
RM_FORMAT = "citeagent-cpu-rm/1"


@dataclass
class CpuRMConfig:
    comparisons: str = "runs/cpu_pipeline/comparisons.jsonl"  # webgpt_comparisons rows
    out: str = "runs/cpu_pipeline/rm"
    hidden: int = 128
    epochs: int = 30
    lr: float = 1e-3
    weight_decay: float = 1e-3
    valid_fraction: float = 0.15  # questions whose pairs are kept back to measure accuracy
    seed: int = 0
    # the extractive reader whose reading of each answer the model also gets: "" (none),
    # "shipped" (citeagent/artifacts/reader) or a reader directory; saved with the model
    reader: str = ""

    def __post_init__(self):
        check_reader(self.reader, "--reader")
        if not 0 < self.valid_fraction < 0.5:
            raise ValueError(f"--valid-fraction {self.valid_fraction}: give a fraction in (0, 0.5)")
        if self.epochs < 1 or self.lr <= 0:
            raise ValueError("--epochs and --lr must be positive")


def check_reader(reader: str, flag: str) -> None:
    from citeagent.policies.reader import CROSSFIT_FILE, META_FILE

    if reader not in ("", "shipped") and not any((Path(reader) / f).is_file() for f in (META_FILE, CROSSFIT_FILE)):
        raise ValueError(f"{flag} {reader!r}: give 'shipped', a reader directory (with {META_FILE}, from "
                         f"`citeagent train reader`, or {CROSSFIT_FILE}, from `citeagent train reader --folds K`) "
                         "or '' for none")


class RewardHead(nn.Module):
    def __init__(self, hidden: int = 128, n_features: int = N_RM_FEATURES):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(n_features, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)


def n_features(reader: str) -> int:
    return N_RM_FEATURES + (N_READER_FEATURES if reader else 0)


def reader_features(reader: str, questions: list[str], answers: list[Answer]) -> np.ndarray:
    """[N, N_READER_FEATURES]: the reader's probability (in its one distribution over the answers
    of the quotes) of the answer itself, of its likeliest answer found inside the answer's text
    (a sentence answer holds its span) and of its own best answer. The reading is the one the
    policy's answer phase makes of the same quotes, so in RL it is mostly already memoised."""
    from citeagent.eval.answer_metrics import normalize_answer
    from citeagent.policies.candidate import CandidatePolicyConfig, propose_answers

    proposed = propose_answers(CandidatePolicyConfig(reader=reader), [(q, [{"n": x.n, "text": x.text} for x in a.quotes])
                                     for q, a in zip(questions, answers)])
    out = np.zeros((len(answers), N_READER_FEATURES), np.float32)
    for i, (a, cands) in enumerate(zip(answers, proposed)):
        if a.declined or not cands:
            continue
        text = normalize_answer(a.plain_text())
        probs = [(normalize_answer(c.text), math.exp(c.score)) for c in cands]
        same = max((p for t, p in probs if t == text), default=0.0)
        inside = max((p for t, p in probs if t and f" {t} " in f" {text} "), default=0.0)
        out[i] = [same, inside, probs[0][1]]
    return out


def rm_features(encoder, questions: list[str], answers: list[Answer], reader: str = "") -> np.ndarray:
    """[N, n_features(reader)]: products of the question's, the answer's and the quotes' embeddings,
    and cheap signals (declined, number of quotes, the answer repeating the question, the answer
    found in the quotes, its length, the quotes' similarity to the question)."""
    texts: dict[str, int] = {}

    def slot(t: str) -> int:
        return texts.setdefault(t, len(texts))

    plan = [(slot(q), slot(a.plain_text() or "(no answer)"), [slot(x.text) for x in a.quotes]) for q, a in zip(questions, answers)]
    vecs = encoder.encode(list(texts))
    out = np.zeros((len(answers), N_RM_FEATURES), np.float32)
    for i, ((qi, ai, quotes), q, a) in enumerate(zip(plan, questions, answers)):
        qv, av = vecs[qi], vecs[ai]
        mv = vecs[quotes].mean(0) if quotes else np.zeros(EMBED_DIM, np.float32)
        out[i, :EMBED_DIM] = qv * av
        out[i, EMBED_DIM:2 * EMBED_DIM] = qv * mv
        out[i, 2 * EMBED_DIM:3 * EMBED_DIM] = av * mv
        aw, qw = words(a.plain_text()), words(q)
        quote_text = " ".join(x.text for x in a.quotes).lower()
        cos = [float(qv @ vecs[j]) for j in quotes] or [0.0]
        out[i, 3 * EMBED_DIM:] = [float(a.declined), min(len(a.quotes), 4) / 4, len(aw & qw) / max(1, len(aw)),
                                  float(bool(a.plain_text()) and a.plain_text().lower() in quote_text),
                                  min(len(a.plain_text().split()), 20) / 20, max(cos), sum(cos) / len(cos),
                                  float(qv @ av), float(av @ mv)]
    if reader:
        out = np.concatenate([out, reader_features(reader, questions, answers)], axis=1)
    return out


class AnswerRewardModel:
    """score_batch(questions, answers) -> rewards: the interface best-of-n ranks by."""

    def __init__(self, head: RewardHead, encoder, meta: dict | None = None):
        self.head = head.eval()
        self.encoder = encoder
        self.meta = meta or {}

    def score_batch(self, questions: list[str], answers: list[Answer]) -> list[float]:
        if not answers:
            return []
        with torch.inference_mode():
            x = rm_features(self.encoder, questions, answers, self.meta.get("reader", ""))
            return self.head(torch.from_numpy(x)).tolist()

    def score(self, question: str, answer: Answer) -> float:
        return self.score_batch([question], [answer])[0]

    def save(self, directory: str | Path) -> None:
        from safetensors.torch import save_file

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self.head.state_dict().items()}, str(d / "rm.safetensors"))
        meta = self.meta | {"format": RM_FORMAT, "hidden": self.head.net[0].out_features}
        (d / "rm.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, directory: str | Path, encoder=None) -> "AnswerRewardModel":
        d = Path(directory)
        rebuild = "Train it with `citeagent train cpu-rm` (or `citeagent train pipeline`)."
        if not (d / "rm.json").is_file() or not (d / "rm.safetensors").is_file():
            raise PolicyArtifactError(f"No CPU reward model in {d} (rm.json, rm.safetensors). {rebuild}")
        try:
            meta = json.loads((d / "rm.json").read_text(encoding="utf-8"))
            if meta.get("format") != RM_FORMAT:
                raise ValueError(f"format {meta.get('format')!r}, expected {RM_FORMAT}")
            from safetensors.torch import load_file

            head = RewardHead(meta["hidden"], n_features(meta.get("reader", "")))
            head.load_state_dict(load_file(str(d / "rm.safetensors")))
        except Exception as e:  # noqa: BLE001 - any failure means the same: the artifact is unusable
            raise PolicyArtifactError(f"The CPU reward model in {d} is corrupt ({type(e).__name__}: {e}). {rebuild}") from None
        if encoder is None:
            from citeenv.search.encoder import load_encoder

            encoder = load_encoder(cache_size=200_000)
        return cls(head, encoder, meta)


# ------------------------------------------------------------------------------- comparisons
def comparisons_from_episodes(episodes, n: int, source: str = "cpu-gold") -> list:
    """Episodes grouped n per question (as sample_comparisons runs them) -> every untied pair."""
    from citeagent.reward.schema import Comparison, answers_identical

    out = []
    for g in range(0, len(episodes), n):
        group = episodes[g:g + n]
        for i in range(len(group)):
            for j in range(i + 1, len(group)):
                a, b = group[i], group[j]
                diff = a.gold["score"] - b.gold["score"]
                if abs(diff) < 1e-9 or answers_identical(a.answer, b.answer):
                    continue
                out.append(Comparison(a.question["question"], a.answer, b.answer, max(-1.0, min(1.0, diff)),
                                      source=source, id=f"{a.question['id']}:{i}-{j}", group=str(a.question["id"]),
                                      meta={"gold_0": a.gold, "gold_1": b.gold}))
    return out


def write_comparisons(comps, path: str | Path) -> None:
    from citeagent.reward.schema import to_webgpt_row

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for c in comps:
            row = to_webgpt_row(c)
            row.setdefault("meta", {}).update({"group": c.group, "id": c.id, "source": c.source})
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def read_comparisons(path: str | Path) -> list:
    from citeagent.reward.schema import from_webgpt_row

    p = Path(path)
    if not p.is_file():
        raise ValueError(f"--comparisons {p}: no such file. Make one with `citeagent train pipeline` "
                         "(the comparisons stage) or export the labelling app's judgements.")
    from citeenv.jsonl import iter_jsonl

    out = []
    for lineno, row in iter_jsonl(p):  # a line that is not a JSON object stops with its file and line
        c = from_webgpt_row(row, f"{p}, line {lineno}", source="cpu")  # raises DataError naming the row
        c.group = str((row.get("meta") or {}).get("group") or c.question)
        out.append(c)
    if not out:
        raise ValueError(f"--comparisons {p} holds no comparison.")
    return out


# ------------------------------------------------------------------------------- training
def pair_kinds(c) -> list[str]:
    """What a gold-judged pair is about, for the report's accuracy breakdown: its setting (pydocs
    or hotpotqa, by the question id the sampler gives) and whether the two answers' own scores
    differ ("answer") or only their supporting quotes do ("support only"). Pairs labelled by
    people carry no gold judgement: "unjudged"."""
    g0, g1 = c.meta.get("gold_0"), c.meta.get("gold_1")
    if not isinstance(g0, dict) or not isinstance(g1, dict):
        return ["unjudged"]
    setting = "pydocs" if c.group.startswith("pydocs-") else "hotpotqa"
    key = "correct" if "correct" in g0 else "answer_f1"
    about = "answer" if abs(g0.get(key, 0.0) - g1.get(key, 0.0)) > 1e-9 else "support only"
    return [setting, f"{setting}, {about}"]


def accuracy_by_kind(comps, margins: list[float]) -> dict:
    """{kind: {"pairs": n, "accuracy": share of pairs the model orders as labelled}} over the
    untied pairs; `margins` are r(answer_0) - r(answer_1)."""
    out: dict[str, list[int]] = {}
    for c, m in zip(comps, margins):
        if c.score_0 == 0:
            continue
        for kind in pair_kinds(c):
            out.setdefault(kind, []).append(int((m > 0) == (c.score_0 > 0)))
    return {k: {"pairs": len(v), "accuracy": round(sum(v) / len(v), 4)} for k, v in sorted(out.items())}


def train_rm(cfg: CpuRMConfig, encoder=None, log=print) -> tuple[AnswerRewardModel, dict]:
    """Bradley-Terry on the comparisons (WebGPT's labels: ties soft, others by sign); accuracy on
    the pairs of questions kept back; the epoch with the best validation loss is kept."""
    if encoder is None:
        from citeenv.search.encoder import load_encoder

        encoder = load_encoder(cache_size=200_000)
    comps = read_comparisons(cfg.comparisons)
    groups = sorted({c.split_key() for c in comps})
    rng = np.random.default_rng(cfg.seed)
    rng.shuffle(groups)
    held = set(groups[: max(1, int(len(groups) * cfg.valid_fraction))])
    parts = {"train": [c for c in comps if c.split_key() not in held], "valid": [c for c in comps if c.split_key() in held]}
    if not parts["train"] or not parts["valid"]:
        raise ValueError(f"{cfg.comparisons}: too few questions ({len(groups)}) to keep some back for validation.")
    data = {}
    for name, cs in parts.items():
        qs = [c.question for c in cs]
        x0 = torch.from_numpy(rm_features(encoder, qs, [c.answer_0 for c in cs], cfg.reader))
        x1 = torch.from_numpy(rm_features(encoder, qs, [c.answer_1 for c in cs], cfg.reader))
        y = torch.tensor([c.label("webgpt") for c in cs])
        data[name] = (x0, x1, y)
    torch.manual_seed(cfg.seed)
    head = RewardHead(cfg.hidden, n_features(cfg.reader))
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    loss_fn = nn.BCEWithLogitsLoss()
    best, best_state, history = math.inf, None, []
    x0, x1, y = data["train"]
    for epoch in range(cfg.epochs):
        head.train()
        perm = torch.randperm(len(y))
        for lo in range(0, len(y), 64):
            b = perm[lo: lo + 64]
            loss = loss_fn(head(x0[b]) - head(x1[b]), y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
        head.eval()
        with torch.no_grad():
            v0, v1, vy = data["valid"]
            margin = head(v0) - head(v1)
            vloss = float(loss_fn(margin, vy))
            decided = vy != 0.5
            acc = float(((margin > 0).float() == vy)[decided].float().mean()) if decided.any() else float("nan")
        history.append({"epoch": epoch + 1, "valid_loss": vloss, "valid_accuracy": acc})
        if vloss < best:
            best, best_state = vloss, {k: v.clone() for k, v in head.state_dict().items()}
    head.load_state_dict(best_state)
    with torch.no_grad():
        v0, v1, _ = data["valid"]
        breakdown = accuracy_by_kind(parts["valid"], (head(v0) - head(v1)).tolist())
    best_epoch = min(history, key=lambda h: h["valid_loss"])
    log(f"reward model: {len(parts['train'])} training pairs, {len(parts['valid'])} validation pairs; "
        f"best epoch {best_epoch['epoch']}: validation accuracy {best_epoch['valid_accuracy']:.3f}")
    report = {"config": asdict(cfg), "train_pairs": len(parts["train"]), "valid_pairs": len(parts["valid"]),
              "valid_accuracy": best_epoch["valid_accuracy"], "valid_by_kind": breakdown, "history": history}
    meta = {"valid_accuracy": best_epoch["valid_accuracy"], "train_pairs": len(parts["train"])}
    if cfg.reader:  # absent for none, so models made before the option read as they were
        meta["reader"] = cfg.reader
    rm = AnswerRewardModel(head, encoder, meta)
    rm.save(cfg.out)
    Path(cfg.out, "rm_report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return rm, report


def main(cfg: CpuRMConfig) -> int:
    _, report = train_rm(cfg)
    print(json.dumps({k: v for k, v in report.items() if k not in ("history", "config")}, indent=2))
    return 0
