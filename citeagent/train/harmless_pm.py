"""`citeagent train harmless-pm`: the harmlessness preference model on every HH-RLHF harmless-base
pair the shared data holds.

With --finetune-layers 0 the backbone is frozen MiniLM: its embeddings of each response (and of
the exchange) are computed once, then small Bradley-Terry heads are fitted on them in seconds. That budget buys a search: each
head configuration (feature kind x hidden size x weight decay) is fitted on the training pairs and
measured on a validation split of them; the best is refitted on training + validation and
measured once on the held-out test pairs, with a bootstrap 95% interval. Splits are by dialogue
(`split_heldout`), so no test dialogue is ever trained on.

With --finetune-layers N the top N of MiniLM's transformer layers are trained with the head
(citeagent.safety.finetuned): the lower layers' hidden states are computed once per text, the
head starts as the linear head fitted on the frozen embeddings (epoch 0 of every run), and each
(layers, learning rate) run is measured on the validation split after every epoch, which chooses
the configuration and its number of epochs (early stopping). The choice is refitted on training +
validation for that many epochs and measured once on the test pairs, as above. This is the
default: it measured better on the held-out pairs (docs/RESULTS.md) and is the shipped model.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, field

from citeagent.safety import HARMLESS_PM_DIR as DEFAULT_DIR


@dataclass
class HarmlessPMConfig:
    out: str = field(default=str(DEFAULT_DIR), metadata={"help": "where the head is saved (default: the one shipped "
                                                                  "with citeagent, which `ask` and `eval` load)"})
    splits: str = field(default="harmless-base", metadata={"help": "HH-RLHF splits to train on, joined with +"})
    test_frac: float = field(default=0.2, metadata={"help": "fraction of dialogues held out for the one test"})
    val_frac: float = field(default=0.25, metadata={"help": "fraction of the training dialogues the search is "
                                                            "measured on"})
    # The defaults rebuild the shipped model (fine-tuned top layers on "exchange"; about 30 minutes on one
    # thread). `--finetune-layers 0 --features exchange,response+exchange,response,turn*response,all`
    # is the minutes-long search of heads on the frozen encoder.
    features: str = field(default="exchange",
                          metadata={"help": "feature kinds to search, comma-separated (see citeagent.safety.features)"})
    hidden: str = field(default="0,32", metadata={"help": "hidden sizes to search (0: a linear head)"})
    weight_decay: str = field(default="1,10", metadata={"help": "AdamW weight decays to search"})
    epochs: int = field(default=300, metadata={"help": "full-batch steps per fit"})
    lr: float = 0.01
    encoder: str = field(default="minilm", metadata={"help": "sentence encoder: minilm (offline) or a HF name/path"})
    embedding_cache: str = field(default="default", metadata={
        "help": "an .npz the text embeddings are kept in between runs ('default': $CITEAGENT_HOME/safety/"
                "embeddings-<encoder>.npz; 'none': no cache)"})
    max_pairs: int | None = field(default=None, metadata={"help": "use only this many pairs (tests; default all)"})
    seed: int = 0
    n_boot: int = 1000
    threads: int = field(default=0, metadata={"help": "torch CPU threads for embedding (0: torch's default)"})
    fit_threads: int = field(default=1, metadata={"help": "torch CPU threads for fitting the heads: they are tiny, "
                                                          "and more threads only wait on each other on a busy machine"})
    finetune_layers: str = field(default="1,2", metadata={
        "help": "train the top N encoder layers with the head, comma-separated to search (e.g. 1,2; needs one "
                "--features kind of response, exchange, response+exchange); 0: heads on the frozen encoder"})
    ft_lr: str = field(default="3e-5,1e-4", metadata={"help": "learning rates of the fine-tuned layers to search"})
    ft_head_lr: float = field(default=1e-3, metadata={"help": "learning rate of the head while fine-tuning"})
    ft_weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay while fine-tuning"})
    ft_epochs: int = field(default=3, metadata={"help": "most epochs per fine-tuning run; the best on validation "
                                                        "(0: the frozen-encoder head) is kept"})
    ft_batch: int = field(default=16, metadata={"help": "pairs per fine-tuning step"})
    max_tokens: int = field(default=256, metadata={"help": "tokens per text when fine-tuning (longer ones are cut)"})

    def __post_init__(self):
        if not 0 < self.test_frac < 1 or not 0 < self.val_frac < 1:
            raise ValueError("--test-frac and --val-frac must be between 0 and 1")
        self.search_space()  # a bad list fails here, before anything loads
        if self.finetune_layers_list():
            self.finetune_space()

    def finetune_layers_list(self) -> list[int]:
        """The layer counts to fine-tune; [] for the frozen encoder."""
        try:
            layers = [int(n) for n in self.finetune_layers.split(",")]
        except ValueError:
            raise ValueError("--finetune-layers is a comma-separated list of layer counts, e.g. 1,2 "
                             "(0: frozen)") from None
        if layers == [0]:
            return []
        if any(n < 1 for n in layers):
            raise ValueError("--finetune-layers: use positive layer counts (e.g. 1,2), or 0 alone for the frozen "
                             "encoder")
        return layers

    def finetune_space(self) -> list[tuple[int, float]]:
        from citeagent.safety.features import FINETUNE_PARTS as PARTS

        kinds = _split_kinds(self.features)
        if len(kinds) != 1 or kinds[0] not in PARTS:
            raise ValueError(f"--finetune-layers trains one model: pass one --features kind of {', '.join(PARTS)} "
                             f"(got {self.features!r})")
        try:
            lrs = [float(x) for x in self.ft_lr.split(",")]
        except ValueError:
            raise ValueError("--ft-lr is a comma-separated list of learning rates, e.g. 3e-5,1e-4") from None
        if any(x <= 0 for x in lrs) or self.ft_head_lr <= 0 or self.ft_epochs < 0 or self.ft_batch < 1 \
                or self.max_tokens < 2:
            raise ValueError("--ft-lr and --ft-head-lr must be positive, --ft-epochs >= 0, --ft-batch >= 1, "
                             "--max-tokens >= 2")
        return [(n, lr) for n in self.finetune_layers_list() for lr in lrs]

    def search_space(self) -> list[tuple[str, int, float]]:
        from citeagent.safety.features import FEATURE_KINDS

        kinds = _split_kinds(self.features)
        bad = [k for k in kinds if k not in FEATURE_KINDS or k == "qa"]
        if bad or not kinds:
            raise ValueError(f"--features: unknown kind(s) {bad}; use some of "
                             f"{', '.join(k for k in FEATURE_KINDS if k != 'qa')}")
        try:
            hidden = [int(h) for h in self.hidden.split(",")]
            decays = [float(w) for w in self.weight_decay.split(",")]
        except ValueError:
            raise ValueError("--hidden and --weight-decay are comma-separated numbers, e.g. --hidden 0,64") from None
        return [(k, h, w) for k in kinds for h in hidden for w in decays]


def _split_kinds(text: str) -> list[str]:
    # "response,turn*response" is one kind that contains a comma: rejoin the pieces that belong together
    from citeagent.safety.features import FEATURE_KINDS

    out, pieces = [], [p.strip() for p in text.split(",") if p.strip()]
    i = 0
    while i < len(pieces):
        if i + 1 < len(pieces) and f"{pieces[i]},{pieces[i + 1]}" in FEATURE_KINDS:
            out.append(f"{pieces[i]},{pieces[i + 1]}")
            i += 2
        else:
            out.append(pieces[i])
            i += 1
    return out


def embedding_cache_path(cfg: HarmlessPMConfig):
    from pathlib import Path

    if cfg.embedding_cache in ("", "none"):
        return None
    if cfg.embedding_cache != "default":
        return Path(cfg.embedding_cache)
    from citeenv.paths import citeagent_home

    return citeagent_home() / "safety" / f"embeddings-{cfg.encoder.replace('/', '--')}.npz"


def fit_bt_head(chosen, rejected, hidden: int, weight_decay: float, epochs: int, lr: float, seed: int):
    """A Bradley-Terry head: minimises -log sigmoid(s(chosen) - s(rejected)), full batch."""
    import torch
    import torch.nn.functional as F

    from citeagent.safety.heads import make_head

    torch.manual_seed(seed)
    head = make_head(chosen.shape[1], 1, hidden)
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
    for _ in range(epochs):
        opt.zero_grad()
        loss = -F.logsigmoid(head(chosen) - head(rejected)).mean()
        loss.backward()
        opt.step()
    head.eval()
    return head


def pair_wins(head, chosen, rejected) -> list[float]:
    import torch

    with torch.no_grad():
        return [float(v) for v in (head(chosen) - head(rejected))[:, 0] > 0]


def load_splits(cfg: HarmlessPMConfig, log):
    """All pairs, then the fit, validation and test pairs: by dialogue, the same for every seed-
    and-fraction setting whichever model is trained."""
    from citeagent.reward.sources import load_hh_rlhf, split_heldout, subsample

    comps, stats = load_hh_rlhf(cfg.splits.split("+"))
    comps = subsample(comps, cfg.max_pairs, cfg.seed)
    train, test = split_heldout(comps, cfg.test_frac, seed=cfg.seed)
    fit_part, val = split_heldout(train, cfg.val_frac, seed=cfg.seed + 1)
    log(f"HH-RLHF {cfg.splits}: {stats.kept} pairs ({dict(stats.dropped)} dropped); {len(fit_part)} fit, {len(val)} "
        f"validation, {len(test)} test")
    if not fit_part or not val or not test:
        raise ValueError(f"Too few pairs ({len(comps)}) to split into fit, validation and test; use more data.")
    return comps, fit_part, val, test


def train_harmless_pm(cfg: HarmlessPMConfig, log=lambda m: print(m, file=sys.stderr)) -> dict:
    import torch

    from citeagent.eval.bootstrap import bootstrap_ci
    from citeagent.safety.features import TextEncoder, features
    from citeagent.safety.heads import save_head

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    t0 = time.perf_counter()
    comps, fit_part, val, test = load_splits(cfg, log)
    if cfg.finetune_layers_list():
        return finetune_harmless_pm(cfg, comps, fit_part, val, test, t0, log)
    encoder = TextEncoder(cfg.encoder)
    cache = embedding_cache_path(cfg)
    cached = encoder.load_cache(cache) if cache is not None else 0
    if cache is not None:
        log(f"{cached} embeddings from the cache {cache}")
    space = cfg.search_space()

    def tensors(kind, cs):
        q = [c.question for c in cs]
        a = torch.from_numpy(features(encoder, kind, q, [c.answer_0 for c in cs]))
        b = torch.from_numpy(features(encoder, kind, q, [c.answer_1 for c in cs]))
        # score_0 > 0: answer_0 is the chosen one (HH-RLHF always); a negative score swaps them
        flip = torch.tensor([c.score_0 < 0 for c in cs])[:, None]
        return torch.where(flip, b, a), torch.where(flip, a, b)

    t_enc = time.perf_counter()
    data = {kind: {name: tensors(kind, cs) for name, cs in (("fit", fit_part), ("val", val), ("test", test))}
            for kind in dict.fromkeys(k for k, _, _ in space)}
    encode_s = time.perf_counter() - t_enc
    log(f"embedded the texts in {encode_s:.0f} s")
    if cache is not None:
        encoder.save_cache(cache)
    if cfg.fit_threads:
        torch.set_num_threads(cfg.fit_threads)
    results = []
    for kind, hidden, wd in space:
        head = fit_bt_head(*data[kind]["fit"], hidden, wd, cfg.epochs, cfg.lr, cfg.seed)
        acc = sum(pair_wins(head, *data[kind]["val"])) / len(val)
        results.append({"features": kind, "hidden": hidden, "weight_decay": wd, "val_accuracy": acc})
        log(f"  {kind:26s} hidden={hidden:<3d} wd={wd:<5g} validation accuracy {acc:.3f}")
    best = max(results, key=lambda r: r["val_accuracy"])  # ties: the first, the simplest in the search order
    kind, hidden, wd = best["features"], best["hidden"], best["weight_decay"]
    both = [torch.cat([x, y]) for x, y in zip(data[kind]["fit"], data[kind]["val"])]
    head = fit_bt_head(*both, hidden, wd, cfg.epochs, cfg.lr, cfg.seed)
    wins = pair_wins(head, *data[kind]["test"])
    test_ci = bootstrap_ci(wins, n_resamples=cfg.n_boot, seed=cfg.seed)
    seconds = time.perf_counter() - t0
    meta = {"kind": "harmlessness-pm", "features": kind, "hidden": hidden, "weight_decay": wd, "encoder": cfg.encoder,
            "dim": int(both[0].shape[1]), "outputs": 1, "data": f"hh-rlhf:{cfg.splits}",
            "pairs": {"total": len(comps), "fit": len(fit_part), "validation": len(val), "test": len(test)},
            "test_accuracy": test_ci, "search": results, "config": asdict(cfg), "seconds": round(seconds, 1),
            "encode_seconds": round(encode_s, 1), "embeddings_from_cache": cached}
    save_head(cfg.out, head, meta)
    log(f"chose {kind} hidden={hidden} wd={wd:g} (validation {best['val_accuracy']:.3f}); test accuracy "
        f"{test_ci['mean']:.3f} [{test_ci['ci_low']:.3f}, {test_ci['ci_high']:.3f}] on {len(test)} pairs; "
        f"{seconds:.0f} s; saved to {cfg.out}")
    return meta


# --- fine-tuning the encoder's top layers ----------------------------------------------------------

def _pair_states(comps, kind: str, states: dict) -> dict[str, list]:
    """Per part of the feature kind, the cached lower states of each pair's chosen and rejected
    answer: {"chosen": {part: [...]}, "rejected": {part: [...]}}."""
    from citeagent.safety.features import feature_texts
    from citeagent.safety.finetuned import PARTS

    q = [c.question for c in comps]
    a = feature_texts("exchange", q, [c.answer_0 for c in comps])
    b = feature_texts("exchange", q, [c.answer_1 for c in comps])
    # score_0 > 0: answer_0 is the chosen one (HH-RLHF always); a negative score swaps them
    flip = [c.score_0 < 0 for c in comps]
    out = {"chosen": {}, "rejected": {}}
    for part in PARTS[kind]:
        out["chosen"][part] = [states[(y if f else x)] for x, y, f in zip(a[part], b[part], flip)]
        out["rejected"][part] = [states[(x if f else y)] for x, y, f in zip(a[part], b[part], flip)]
    return out


def _take(pairs: dict, idx) -> dict:
    return {side: {p: [v[i] for i in idx] for p, v in parts.items()} for side, parts in pairs.items()}


def _concat(x: dict, y: dict) -> dict:
    return {side: {p: x[side][p] + y[side][p] for p in x[side]} for side in x}


def _batches(pairs: dict, batch: int, rng) -> list[list[int]]:
    """Shuffled batches of pair indices, each of pairs of similar length: padding to a batch's
    longest text is wasted arithmetic, and HH-RLHF's texts run from a few tokens to the cut."""
    n = len(next(iter(pairs["chosen"].values())))
    length = [max(len(v[i]) for side in pairs.values() for v in side.values()) for i in range(n)]
    order = list(range(n))
    rng.shuffle(order)
    out = []
    for start in range(0, n, batch * 20):  # sort within windows of 20 batches, so batches still vary
        window = sorted(order[start:start + batch * 20], key=length.__getitem__)
        out.extend(window[i:i + batch] for i in range(0, len(window), batch))
    rng.shuffle(out)
    return out


def _features(scorer, pairs: dict, batch: int = 64):
    """(chosen features, rejected features), in eval mode."""
    import torch

    scorer.eval()
    n = len(next(iter(pairs["chosen"].values())))
    with torch.no_grad():
        return tuple(torch.cat([scorer.features({p: v[i:i + batch] for p, v in pairs[side].items()})
                                for i in range(0, n, batch)]) for side in ("chosen", "rejected"))


def _accuracy(scorer, pairs: dict) -> float:
    import torch

    c, r = _features(scorer, pairs)
    with torch.no_grad():
        return float((scorer.head(c) > scorer.head(r)).float().mean())


def finetune_run(scorer, head_init: dict, fit: dict, val: dict | None, epochs: int, lr: float, cfg: HarmlessPMConfig,
                 log) -> list[dict]:
    """Train `scorer` (its trained layers and head, the head starting from `head_init`) on the fit
    pairs for `epochs` epochs; with `val`, measure it before the first epoch and after each.
    Returns the per-epoch fit loss and validation accuracy."""
    import random

    import torch
    import torch.nn.functional as F

    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    scorer.head.load_state_dict(head_init)
    # the head moves faster than the pretrained layers: it starts from the frozen fit, they from MiniLM
    opt = torch.optim.AdamW([{"params": scorer.trained.parameters(), "lr": lr},
                             {"params": scorer.head.parameters(), "lr": cfg.ft_head_lr}],
                            weight_decay=cfg.ft_weight_decay)
    history = []
    for epoch in range(epochs + 1):
        loss_sum = None
        if epoch:  # epoch 0: the starting point, the frozen encoder's head
            scorer.train()
            scorer.frozen.eval()  # no dropout in the layers that are not trained
            loss_sum = 0.0
            for idx in _batches(fit, cfg.ft_batch, rng):
                b = _take(fit, idx)
                s = scorer({p: b["chosen"][p] + b["rejected"][p] for p in b["chosen"]})  # one padded forward
                loss = -F.logsigmoid(s[:len(idx)] - s[len(idx):]).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
                loss_sum += loss.item() * len(idx)
        fit_loss = None if loss_sum is None else loss_sum / len(fit["chosen"][next(iter(fit["chosen"]))])
        acc = _accuracy(scorer, val) if val is not None else None
        history.append({"epoch": epoch, "fit_loss": fit_loss, "val_accuracy": acc})
        said = ([] if fit_loss is None else [f"fit loss {fit_loss:.4f}"]) + \
            ([] if acc is None else [f"validation accuracy {acc:.3f}"])
        log(f"    epoch {epoch}: {', '.join(said) or 'start'}")
    scorer.eval()
    return history


def finetune_harmless_pm(cfg: HarmlessPMConfig, comps, fit_part, val, test, t0: float, log) -> dict:
    import torch

    from citeagent.eval.bootstrap import bootstrap_ci
    from citeagent.safety.features import feature_texts
    from citeagent.safety.finetuned import PARTS, Base, TopScorer, lower_states, save_finetuned

    kind = _split_kinds(cfg.features)[0]
    space = cfg.finetune_space()
    base = Base(cfg.encoder, cfg.max_tokens)
    n_layers = len(base.layers)
    most = max(n for n, _ in space)
    if most > n_layers:
        raise ValueError(f"--finetune-layers {most}: the encoder has only {n_layers} layers")
    n_lower = n_layers - most  # cached once; runs training fewer layers pass the rest frozen

    t_enc = time.perf_counter()
    texts = []
    for cs in (fit_part, val, test):
        q = [c.question for c in cs]
        for answers in ([c.answer_0 for c in cs], [c.answer_1 for c in cs]):
            parts = feature_texts("exchange", q, answers)
            texts += [t for p in PARTS[kind] for t in parts[p]]
    texts = list(dict.fromkeys(texts))
    states = dict(zip(texts, lower_states(base, texts, n_lower)))
    encode_s = time.perf_counter() - t_enc
    log(f"hidden states after layer {n_lower} of {n_layers} for {len(texts)} texts (<= {cfg.max_tokens} tokens) in "
        f"{encode_s:.0f} s")
    data = {name: _pair_states(cs, kind, states) for name, cs in (("fit", fit_part), ("val", val), ("test", test))}
    if cfg.fit_threads:
        torch.set_num_threads(cfg.fit_threads)

    # the head every run starts from: the linear Bradley-Terry head on the frozen encoder's features
    wd0 = [float(w) for w in cfg.weight_decay.split(",")][0]
    frozen = TopScorer(base.layers[n_lower:], most, PARTS[kind], base.dim).eval()

    def frozen_head(pairs):
        head = fit_bt_head(*_features(frozen, pairs), 0, wd0, cfg.epochs, cfg.lr, cfg.seed)
        return {k.removeprefix("0."): v for k, v in head.state_dict().items()}  # Sequential(Linear) -> Linear

    head_fit = frozen_head(data["fit"])
    results = []
    for n, lr in space:
        t_run = time.perf_counter()
        log(f"  fine-tuning the top {n} layer(s), lr {lr:g}:")
        scorer = TopScorer(base.layers[n_lower:], most - n, PARTS[kind], base.dim)
        history = finetune_run(scorer, head_fit, data["fit"], data["val"], cfg.ft_epochs, lr, cfg, log)
        best = max(history, key=lambda h: h["val_accuracy"])  # ties: the earliest epoch
        results.append({"finetune_layers": n, "lr": lr, "epochs": best["epoch"], "val_accuracy": best["val_accuracy"],
                        "history": history, "seconds": round(time.perf_counter() - t_run, 1)})
    chosen = max(results, key=lambda r: r["val_accuracy"])  # ties: the first, the fewest layers and lowest lr
    n, lr, epochs = chosen["finetune_layers"], chosen["lr"], chosen["epochs"]
    log(f"chose the top {n} layer(s), lr {lr:g}, {epochs} epoch(s) (validation {chosen['val_accuracy']:.3f}); "
        f"refitting on fit + validation")
    both = _concat(data["fit"], data["val"])
    scorer = TopScorer(base.layers[n_lower:], most - n, PARTS[kind], base.dim)
    refit_history = finetune_run(scorer, frozen_head(both), both, None, epochs, lr, cfg, log)
    scorer.round_fp16()  # measure what is saved
    c, r = _features(scorer, data["test"])
    with torch.no_grad():
        wins = [float(v) for v in (scorer.head(c) > scorer.head(r))[:, 0]]
    test_ci = bootstrap_ci(wins, n_resamples=cfg.n_boot, seed=cfg.seed)
    seconds = time.perf_counter() - t0
    meta = {"kind": "harmlessness-pm", "features": kind, "hidden": 0, "weight_decay": cfg.ft_weight_decay,
            "encoder": cfg.encoder, "finetune_layers": n, "lr": lr, "epochs": epochs, "max_tokens": cfg.max_tokens,
            "dim": base.dim * len(PARTS[kind]), "outputs": 1, "data": f"hh-rlhf:{cfg.splits}",
            "pairs": {"total": len(comps), "fit": len(fit_part), "validation": len(val), "test": len(test)},
            "test_accuracy": test_ci, "search": results, "refit": refit_history, "config": asdict(cfg),
            "seconds": round(seconds, 1), "encode_seconds": round(encode_s, 1)}
    save_finetuned(cfg.out, scorer, meta)
    log(f"test accuracy {test_ci['mean']:.3f} [{test_ci['ci_low']:.3f}, {test_ci['ci_high']:.3f}] on {len(test)} "
        f"pairs; {seconds:.0f} s; saved to {cfg.out}")
    return meta


def run_harmless_pm(cfg: HarmlessPMConfig) -> int:
    meta = train_harmless_pm(cfg)
    print(json.dumps({k: meta[k] for k in ("features", "hidden", "weight_decay", "pairs", "test_accuracy", "seconds")},
                     indent=2))
    return 0
