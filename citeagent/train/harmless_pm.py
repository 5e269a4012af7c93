"""`citeagent train harmless-pm`: the harmlessness preference model on every HH-RLHF harmless-base
pair the shared data holds.

The backbone is frozen MiniLM: its embeddings of each response (and of the exchange) are computed
once, then small Bradley-Terry heads are fitted on them in seconds. That budget buys a search: each
head configuration (feature kind x hidden size x weight decay) is fitted on the training pairs and
measured on a validation split of them; the best is refitted on training + validation and
measured once on the held-out test pairs, with a bootstrap 95% interval. Splits are by dialogue
(`split_heldout`), so no test dialogue is ever trained on.
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
    features: str = field(default="exchange,response+exchange,response,turn*response,all",
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

    def __post_init__(self):
        if not 0 < self.test_frac < 1 or not 0 < self.val_frac < 1:
            raise ValueError("--test-frac and --val-frac must be between 0 and 1")
        self.search_space()  # a bad list fails here, before anything loads

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


def train_harmless_pm(cfg: HarmlessPMConfig, log=lambda m: print(m, file=sys.stderr)) -> dict:
    import torch

    from citeagent.eval.bootstrap import bootstrap_ci
    from citeagent.reward.sources import load_hh_rlhf, split_heldout, subsample
    from citeagent.safety.features import TextEncoder, features
    from citeagent.safety.heads import save_head

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    t0 = time.perf_counter()
    comps, stats = load_hh_rlhf(cfg.splits.split("+"))
    comps = subsample(comps, cfg.max_pairs, cfg.seed)
    train, test = split_heldout(comps, cfg.test_frac, seed=cfg.seed)
    fit_part, val = split_heldout(train, cfg.val_frac, seed=cfg.seed + 1)
    log(f"HH-RLHF {cfg.splits}: {stats.kept} pairs ({dict(stats.dropped)} dropped); {len(fit_part)} fit, {len(val)} "
        f"validation, {len(test)} test")
    if not fit_part or not val or not test:
        raise ValueError(f"Too few pairs ({len(comps)}) to split into fit, validation and test; use more data.")
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


def run_harmless_pm(cfg: HarmlessPMConfig) -> int:
    meta = train_harmless_pm(cfg)
    print(json.dumps({k: meta[k] for k in ("features", "hidden", "weight_decay", "pairs", "test_accuracy", "seconds")},
                     indent=2))
    return 0
