"""The CPU-scale policy: score the commands the browser enumerates, pick by a softmax.

DRRN's shape (He et al. 2016) at the size of this CPU. The browser lists the valid commands of a
state (`citeenv.candidates`); each gets a feature vector built from MiniLM embeddings (cached, so
a sentence is embedded once however often it is seen) and cheap signals (result rank, already
visited, overlap with the question and the quotes); a small MLP scores every candidate; the policy
is a softmax over the valid ones, so log-probs, entropy and KL are exact and invalid commands
cannot be chosen. Decisions of all live episodes go through one encoder call and one MLP call.

The answer is extractive and short, chosen the same way: citeagent.policies.spans enumerates
spans of the quotes (names, numbers, dates, short phrases), a comparison question's options and
yes/no, each cited with the quotes it came from; the answer head scores them and the policy picks
by a softmax over them.

Artifacts (a directory): scorer.safetensors + policy.json (the feature layout and config).
"""
from __future__ import annotations

import itertools
import json
import math
import re
import sqlite3
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from citeagent.policies import ANSWER_FORMS
from citeagent.policies.spans import N_SPAN_FEATURES, answer_candidates, format_answer, span_features
from citeenv.candidates import CandidateConfig

KINDS = ("Search", "Clicked on link", "Quote:", "Find in page:", "Scrolled down", "Scrolled up", "Back", "End: Answer",
         "End: Decline")
MOVES = ("Find in page:", "Scrolled down", "Scrolled up")
VIEWS = ("none", "results", "document")
MAX_QUOTES_FEATURE = 4
N_PER_CANDIDATE = 16  # see Featurizer._one
N_SCALAR = len(KINDS) + N_PER_CANDIDATE + (MAX_QUOTES_FEATURE + 1) + len(VIEWS)
EMBED_DIM = 384
N_FEATURES = N_SCALAR + 2 * EMBED_DIM
N_ANSWER_FEATURES = N_SPAN_FEATURES
# texts whose vectors a process keeps in memory beside the on-disk store (about 2 KB each, key and
# vector): a PPO run over the pooled pages meets hundreds of thousands of sentences
MEMO_TEXTS = 100_000
SHIPPED = Path(__file__).resolve().parent.parent / "artifacts" / "cpu_policy"

_TOKEN = re.compile(r"[a-z0-9]+")
_STOP = frozenset("""a an the of to in on for and or is are was were be been by with as at from that this these
those it its which who whom what when where why how does do did can could should would will not no than
there their they he she his her you your we our into about over under between after before so if also
only just any some such both same other more most""".split())


class PolicyArtifactError(RuntimeError):
    """A missing or corrupt policy artifact; the message names the file and the command that rebuilds it."""


_CACHES: dict[Path, "Featurizer"] = {}


def embedding_cache_path() -> Path:
    """Where the policy keeps the MiniLM vectors of texts it has seen (a cache: safe to delete)."""
    from citeenv.paths import citeagent_home

    return citeagent_home() / "embeddings" / "cpu_policy_minilm.sqlite"


def open_embedding_cache(encoder) -> "Featurizer":
    """A Featurizer for `encoder` over the on-disk cache of its vectors."""
    from citeagent.policies.embedding_store import open_store

    path = embedding_cache_path()
    store = open_store(path, EMBED_DIM)
    featurizer = Featurizer(encoder, store=store)
    if store is not None:  # the vectors an earlier version kept in one .npz: training runs stay warm
        try:
            store.import_npz_once(path.with_suffix(".npz"))
        except sqlite3.Error as e:  # a full disk, say: the policy still runs, without the cache
            featurizer._drop_store(e)
    return featurizer


def words(text: str) -> set[str]:
    return {w for w in _TOKEN.findall(text.lower()) if w not in _STOP}


@dataclass
class CandidatePolicyConfig:
    hidden: int = 256
    # 0 acts by argmax (evaluation, `ask`); above 0 samples from the softmax at this temperature
    # (rollouts, best-of-n). Log-probs are of the softmax at the temperature (at 1 when greedy).
    temperature: float = 0.0
    max_quotes: int = 4  # End: Answer is the only way on once this many quotes are taken
    candidates: dict = field(default_factory=lambda: asdict(CandidateConfig()))
    # the extractive answer reader (citeagent/artifacts/reader) proposes answers and scores them
    # for the answer head: "shipped", a reader directory, or "" for none. Part of what the
    # answer head was trained on, so it is saved with the policy.
    reader: str = ""
    reader_k: int = 8
    # "span": the picked span alone (HotpotQA's short answers); "sentence": the quoted sentence
    # that holds it (documentation, the web). Chosen per corpus by answer_form_for; not trained.
    answer_form: str = "span"

    def __post_init__(self):
        if self.answer_form not in ANSWER_FORMS:
            raise ValueError(f"answer_form {self.answer_form!r}: use one of {', '.join(ANSWER_FORMS)}")


def answer_form_for(corpus: str | None, requested: str = "auto") -> str:
    """The answer form a corpus's questions want, unless one is `requested`: HotpotQA's are short
    factoids scored by span F1; documentation and web questions want the statement, so the quoted
    sentence."""
    if requested != "auto":
        return requested
    return "span" if str(corpus or "").startswith("hotpotqa") else "sentence"


class Scorer(nn.Module):
    """features [..., N_FEATURES] -> a score per candidate; a value head reads the state."""

    def __init__(self, hidden: int = 256):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(N_FEATURES, hidden), nn.ReLU(), nn.Linear(hidden, hidden // 2), nn.ReLU(),
                                 nn.Linear(hidden // 2, 1))
        # The value of a state: the mean of its candidates' first-layer activations, read by a line.
        self.value_head = nn.Sequential(nn.Linear(hidden, hidden // 2), nn.ReLU(), nn.Linear(hidden // 2, 1))
        # Answer candidates (spans, options, yes/no) get their own small MLP; the value of the
        # answering state is a line over their mean features.
        self.answer_head = nn.Sequential(nn.Linear(N_ANSWER_FEATURES, 64), nn.ReLU(), nn.Linear(64, 1))
        self.answer_value = nn.Linear(N_ANSWER_FEATURES, 1)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.net(feats).squeeze(-1)

    def answer_scores(self, feats: torch.Tensor) -> torch.Tensor:
        return self.answer_head(feats).squeeze(-1)

    def value(self, feats: torch.Tensor, mask: torch.Tensor, answer: bool = False) -> torch.Tensor:
        """feats [B, C, F], mask [B, C] (True = a real candidate) -> [B]."""
        if answer:
            pooled = (feats * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
            return self.answer_value(pooled).squeeze(-1)
        h = torch.relu(self.net[0](feats)) * mask.unsqueeze(-1)
        pooled = h.sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
        return self.value_head(pooled).squeeze(-1)


def masked_log_softmax(scores: torch.Tensor, mask: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """log pi over the valid candidates of each row; invalid ones get -inf (probability 0)."""
    return torch.log_softmax((scores / temperature).masked_fill(~mask, float("-inf")), dim=-1)


class Featurizer:
    """Candidate features from a state's info. Embeddings come from one batched encoder call for
    the texts not seen before; seen ones come from this process's memo or, with a `store`
    (citeagent.policies.embedding_store), from disk, where new ones are added for the next process
    (training re-reads the same sentences for every roll-in, sample and iteration)."""

    def __init__(self, encoder, store=None):
        self.encoder = encoder
        self.cache: dict[str, np.ndarray] = {}
        self.store = store

    def embed(self, texts: list[str]) -> np.ndarray:
        new = [t for t in dict.fromkeys(texts) if t not in self.cache]
        if new and self.store is not None:
            self.cache.update(self._stored(new))
            new = [t for t in new if t not in self.cache]
        if new:
            got = dict(zip(new, self.encoder.encode(new)))
            self.cache.update(got)
            if self.store is not None:
                self._store(got)
        out = np.stack([self.cache[t] for t in texts]) if texts else np.zeros((0, EMBED_DIM), np.float32)
        if self.store is not None and len(self.cache) > MEMO_TEXTS:
            # the store holds every vector bit for bit, so forgetting the oldest costs a lookup, not
            # a different vector; without a store the memo is all there is and stays whole
            for t in list(itertools.islice(self.cache, len(self.cache) - MEMO_TEXTS * 3 // 4)):
                del self.cache[t]
        return out

    def _stored(self, texts: list[str]) -> dict:
        try:
            return self.store.get_many(texts)
        except sqlite3.Error as e:
            self._drop_store(e)
            return {}

    def _store(self, vectors: dict) -> None:
        try:
            self.store.put_many(vectors)
        except sqlite3.Error as e:
            self._drop_store(e)

    def _drop_store(self, error) -> None:
        from citeagent.policies.embedding_store import warn_unusable

        warn_unusable(self.store.path, error)
        self.store = None

    def __call__(self, infos: list[dict]) -> list[np.ndarray]:
        texts: dict[str, int] = {}

        def slot(t: str) -> int:
            return texts.setdefault(t, len(texts))

        plan = []
        for info in infos:
            q = slot(info["question"])
            quotes = [slot(x["text"]) for x in info["quotes"]]
            cands = [slot(c["text"]) if c["text"] else -1 for c in info["candidates"]]
            plan.append((q, quotes, cands))
        vecs = self.embed(list(texts))
        return [self._one(info, vecs, *p) for info, p in zip(infos, plan)]

    def _one(self, info: dict, vecs: np.ndarray, q: int, quotes: list[int], cands: list[int]) -> np.ndarray:
        cs = info["candidates"]
        n = len(cs)
        out = np.zeros((n, N_FEATURES), np.float32)
        qv = vecs[q]
        quote_v = vecs[quotes] if quotes else np.zeros((0, EMBED_DIM), np.float32)
        last_v = quote_v[-1] if quotes else np.zeros(EMBED_DIM, np.float32)
        cand_v = np.stack([vecs[i] if i >= 0 else np.zeros(EMBED_DIM, np.float32) for i in cands]) if n else np.zeros((0, EMBED_DIM), np.float32)
        question = info["question"].lower()
        q_words = words(question)
        quote_text = " ".join(x["text"] for x in info["quotes"]).lower()
        quote_words = words(quote_text)
        quoted_urls = [x["url"] for x in info["quotes"]]
        page_url = (info.get("page") or {}).get("url", "")
        searches = sum(1 for a in info["past_actions"] if a.startswith("Search "))
        last = info["past_actions"][-1] if info["past_actions"] else ""
        n_quotes = len(info["quotes"])
        view = VIEWS.index(info.get("view", "none")) if info.get("view", "none") in VIEWS else 0
        state = np.zeros(MAX_QUOTES_FEATURE + 1 + len(VIEWS), np.float32)
        state[min(n_quotes, MAX_QUOTES_FEATURE)] = 1
        state[MAX_QUOTES_FEATURE + 1 + view] = 1
        for j, c in enumerate(cs):
            f = out[j]
            k = KINDS.index(c["kind"]) if c["kind"] in KINDS else None
            if k is not None:
                f[k] = 1
            o = len(KINDS)
            has_text = cands[j] >= 0
            if has_text:
                cv = cand_v[j]
                f[o] = float(qv @ cv)
                f[o + 1] = float((quote_v @ cv).max()) if quotes else 0.0
                f[o + 2] = float(last_v @ cv)
                cw = words(c["text"])
                f[o + 3] = len(cw & q_words) / max(1, len(q_words))
                f[o + 4] = len(cw & q_words) / math.sqrt(len(cw) + 4)
                f[o + 5] = len(cw & quote_words) / math.sqrt(len(cw) + 4)
                f[o + 11] = min(len(c["text"]), 400) / 400
            title = (c.get("title") or "").lower()
            f[o + 6] = float(bool(title) and title in question)
            f[o + 7] = float(bool(title) and title in quote_text)
            # a result's, link's or sentence's position (a move's rank is the window it lands on)
            f[o + 8] = (c["rank"] + 1) / 10 if c["rank"] >= 0 and c["kind"] not in MOVES else 0.0
            f[o + 9] = float(c.get("visited", False))
            f[o + 10] = float(c["kind"] == "Search" and c["text"] == info["question"])
            f[o + 12] = sum(1 for u in quoted_urls if u and u == (c.get("url") or page_url)) / 3
            f[o + 13] = float(last.startswith(c["kind"])) if c["kind"] in ("Quote:", "Search", "Back") else 0.0
            f[o + 14] = min(info.get("actions_left", 0), 20) / 20
            f[o + 15] = min(searches, 4) / 4
            f[N_SCALAR - len(state):N_SCALAR] = state
            if has_text:
                f[N_SCALAR:N_SCALAR + EMBED_DIM] = qv * cand_v[j]
                f[N_SCALAR + EMBED_DIM:] = last_v * cand_v[j]
        return out


def allowed_candidates(info: dict, max_quotes: int) -> None:
    """The candidates this policy may take, in place (behaviour cloning labels the same list):
    past `max_quotes` quotes only End: Answer and Decline remain (more evidence dilutes the answer),
    with the last action and no quote only a quote or Decline (the browser then asks for an answer,
    and an answer needs a quote to cite), and no move returns to a window already read (a greedy
    policy could oscillate between two)."""
    cs = info["candidates"]
    if len(info["quotes"]) >= max_quotes:
        cs = [c for c in cs if c["kind"] in ("End: Answer", "End: Decline")]
    elif not info["quotes"] and info.get("actions_left", 2) <= 1:
        cs = [c for c in cs if c["kind"] in ("Quote:", "End: Decline")]
    info["candidates"] = [c for c in cs if not (c["kind"] in MOVES and c.get("visited"))]


def pad(feats: list[np.ndarray], width_features: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of different candidate counts -> [B, C, F] and a mask [B, C]."""
    width = max((f.shape[0] for f in feats), default=0)
    n_features = width_features or (feats[0].shape[1] if feats and feats[0].ndim == 2 else N_FEATURES)
    x = torch.zeros(len(feats), max(1, width), n_features)
    mask = torch.zeros(len(feats), max(1, width), dtype=torch.bool)
    for i, f in enumerate(feats):
        if len(f):
            x[i, : len(f)] = torch.from_numpy(f)
            mask[i, : len(f)] = True
    return x, mask


@dataclass
class Decision:
    """What the policy chose in one state, with what training code needs (CleanRL keeps the same)."""

    action: str
    index: int  # the chosen candidate's position
    logprob: float
    features: np.ndarray | None = None  # [C, F], or [K, N_ANSWER_FEATURES] in the answering phase
    phase: str = "browse"


_READERS: dict[str, object] = {}
_READ_MEMO: dict[tuple, dict] = {}


def propose_answers(config: CandidatePolicyConfig, episodes: list[tuple[str, list[dict]]]) -> list[list | None]:
    """The reader's best answers for each (question, quotes) with quotes, or None per episode when
    the policy has no reader. One reader per process and directory."""
    if not config.reader:
        return [None] * len(episodes)
    if config.reader not in _READERS:
        from citeagent.policies.reader import Reader

        _READERS[config.reader] = Reader.load(None if config.reader == "shipped" else config.reader)
    # RL samples a question many times and often ends with the same quotes: their reading is kept
    memo = _READ_MEMO.setdefault((config.reader, config.reader_k), {})
    keys = [(q, tuple((x.get("n"), x["text"]) for x in quotes)) for q, quotes in episodes]
    todo = [i for i, (_, quotes) in enumerate(episodes)
            if keys[i] not in memo and any(x["text"].strip() for x in quotes)]
    if todo:
        got = _READERS[config.reader].candidates_batch([episodes[i] for i in todo], k=config.reader_k)
        if len(memo) > 50_000:
            memo.clear()
        for i, cs in zip(todo, got):
            memo[keys[i]] = cs
    return [list(memo.get(k, [])) for k in keys]


class CandidatePolicy:
    """Scores the enumerated candidates, and the candidate answers (citeagent.policies.spans)."""

    name = "cpu"

    def __init__(self, scorer: Scorer, encoder, config: CandidatePolicyConfig | None = None, seed: int = 0):
        self.config = config or CandidatePolicyConfig()
        self.scorer = scorer.eval()
        self.featurize = Featurizer(encoder)
        self.generator = torch.Generator().manual_seed(seed)  # best_of_n reseeds it
        self.tokens_generated = 0
        self.last_decisions: list[Decision] = []
        self.browser_overrides = {"candidates": CandidateConfig(**self.config.candidates)}

    # ---------------------------------------------------------------- acting
    def act(self, observation: str, info: dict) -> str:
        return self.act_batch([observation], [info])[0]

    def act_batch(self, observations: list[str], infos: list[dict]) -> list[str]:
        decisions: list[Decision | None] = [None] * len(infos)
        browse = [i for i, info in enumerate(infos) if info["phase"] == "browse"]
        answer = [i for i, info in enumerate(infos) if info["phase"] != "browse"]
        if browse:
            for i, d in zip(browse, self._browse([infos[i] for i in browse])):
                decisions[i] = d
        if answer:
            for i, d in zip(answer, self._answer([infos[i] for i in answer])):
                decisions[i] = d
        self.last_decisions = decisions
        return [d.action for d in decisions]

    @property
    def temperature(self) -> float:  # the Samples capability (policies/base.py): best-of-n sets it
        return self.config.temperature

    @temperature.setter
    def temperature(self, value: float) -> None:
        self.config.temperature = float(value)

    def reseed(self, seed: int) -> None:
        self.generator.manual_seed(seed)

    @property
    def _t(self) -> float:
        return self.config.temperature or 1.0

    def _choose(self, logp: np.ndarray) -> int:
        if self.config.temperature <= 0:
            return int(np.argmax(logp))
        return int(torch.multinomial(torch.from_numpy(np.exp(logp - logp.max())), 1, generator=self.generator))

    def _browse(self, infos: list[dict]) -> list[Decision]:
        for info in infos:
            if "candidates" not in info:
                raise ValueError("The browser did not enumerate candidates: run this policy with "
                                 "BrowserConfig(candidates=CandidateConfig()) (rollout.browser_config does).")
            allowed_candidates(info, self.config.max_quotes)
        feats = self.featurize(infos)
        x, mask = pad(feats)
        with torch.inference_mode():
            logp = masked_log_softmax(self.scorer(x), mask, self._t).numpy()
        out = []
        for i, info in enumerate(infos):
            n = len(info["candidates"])
            j = self._choose(logp[i, :n])
            out.append(Decision(info["candidates"][j]["command"], j, float(logp[i, j]), feats[i]))
        return out

    def answer_options(self, infos: list[dict]) -> list[tuple[list, np.ndarray]]:
        """Each answering state's candidate answers and their features; one encoder call (and one
        reader call) for all."""
        proposed = propose_answers(self.config, [(info["question"], info["quotes"]) for info in infos])
        cands = [answer_candidates(info["question"], info["quotes"], proposed=p) for info, p in zip(infos, proposed)]
        self.featurize.embed([t for info, cs in zip(infos, cands)
                              for t in [info["question"], *(c.text for c in cs), *(q["text"] for q in info["quotes"])]])
        return [(cs, span_features(info["question"], info["quotes"], cs, self.featurize.embed, p))
                for info, cs, p in zip(infos, cands, proposed)]

    def _answer(self, infos: list[dict]) -> list[Decision]:
        options = self.answer_options(infos)
        live = [i for i, (cs, _) in enumerate(options) if cs]
        out = [Decision("", -1, 0.0, f, phase="answer") for _, f in options]  # nothing to answer from: refused
        if live:
            x, mask = pad([options[i][1] for i in live], N_ANSWER_FEATURES)
            with torch.inference_mode():
                logp = masked_log_softmax(self.scorer.answer_scores(x), mask, self._t).numpy()
            for r, i in enumerate(live):
                cs, f = options[i]
                j = self._choose(logp[r, : len(cs)])
                out[i] = Decision(format_answer(cs[j], self.config.answer_form, infos[i]["quotes"]), j, float(logp[r, j]), f,
                                  phase="answer")
        return out

    def confidence(self, answer: dict) -> float:
        """The answer head's probability of its best answer: the decline curve drops the lowest first."""
        if not answer.get("quotes"):
            return 0.0
        (cs, f), = self.answer_options([{"question": answer["question"], "quotes": answer["quotes"]}])
        if not cs:
            return 0.0
        with torch.inference_mode():
            return float(torch.softmax(self.scorer.answer_scores(torch.from_numpy(f)), 0).max())

    # ---------------------------------------------------------------- artifacts
    def save(self, directory: str | Path) -> None:
        from safetensors.torch import save_file

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self.scorer.state_dict().items()}, str(d / "scorer.safetensors"))
        config = asdict(self.config) | {"hidden": self.scorer.net[0].out_features}
        meta = {"format": "citeagent-cpu-policy/1", "n_features": N_FEATURES, "n_answer_features": N_ANSWER_FEATURES,
                "config": config}
        (d / "policy.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, directory: str | Path | None = None, encoder=None, seed: int = 0, reader: str = "",
             **overrides) -> "CandidatePolicy":
        """reader: read answers with this reader instead of the saved one ("" keeps it; RL's
        cross-fitted reader); overrides: other config fields."""
        if reader:
            overrides["reader"] = reader
        d = Path(directory) if directory else SHIPPED
        rebuild = "Rebuild it with `citeagent train cpu-bc` (see README, Training)."
        meta_path, weights = d / "policy.json", d / "scorer.safetensors"
        for p in (meta_path, weights):
            if not p.is_file():
                raise PolicyArtifactError(f"The CPU policy artifact {p} is missing. {rebuild}")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            if meta.get("format") != "citeagent-cpu-policy/1" or meta.get("n_features") != N_FEATURES:
                raise ValueError(f"format {meta.get('format')!r} with {meta.get('n_features')} features; "
                                 f"this code reads citeagent-cpu-policy/1 with {N_FEATURES}")
            if meta.get("n_answer_features", N_ANSWER_FEATURES) != N_ANSWER_FEATURES:
                raise ValueError(f"its answer head reads {meta['n_answer_features']} features per candidate answer and "
                                 f"this code makes {N_ANSWER_FEATURES} (the answer candidates changed); retrain the "
                                 "answer head alone with `citeagent train cpu-bc --init DIR --out DIR`")
            # A policy saved before signature lines were quoted with their description keeps the
            # quotable units it was trained and measured with.
            meta["config"].setdefault("candidates", {}).setdefault("signature_join_chars", 0)
            config = CandidatePolicyConfig(**(meta["config"] | overrides))
            from safetensors.torch import load_file

            scorer = Scorer(config.hidden)
            scorer.load_state_dict(load_file(str(weights)))
        except Exception as e:  # noqa: BLE001 - any failure here means the same thing: the artifact is unusable
            raise PolicyArtifactError(f"The CPU policy artifact in {d} is corrupt ({type(e).__name__}: {e}). {rebuild}") from None
        if encoder is not None:
            return cls(scorer, encoder, config, seed)
        path = embedding_cache_path()
        if path not in _CACHES:  # every policy of a process shares one cache, loaded and saved once
            from citeenv.search.encoder import load_encoder

            # as many threads as torch uses (OMP_NUM_THREADS, a trainer's set_num_threads): on an
            # idle 2-core machine two threads halve a cold decision's encoding
            _CACHES[path] = open_embedding_cache(load_encoder(threads=torch.get_num_threads()))
        shared = _CACHES[path]
        policy = cls(scorer, shared.encoder, config, seed)
        policy.featurize = shared
        return policy
