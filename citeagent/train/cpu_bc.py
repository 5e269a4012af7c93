"""Behaviour cloning of the CPU-scale candidate policy (citeagent.policies.candidate).

Every state is one example: cross-entropy of the scorer's softmax over the state's valid
candidates against the expert's choice. The expert (`expert_choice`) knows the gold supporting
sentences of a training question and picks among the same candidates the policy sees, so what
BC imitates is reachable by the policy (no query the policy could not type). States come from
roll-ins that follow the expert, and with probability `explore` take a random candidate instead,
each state labelled with the expert's choice there (DAgger's aggregation with a random roll-in):
the policy also learns to recover from states the expert never visits.

People's `citeagent browse` demonstrations (--demos) add their own steps: a step's action joins
the candidates of its state if it is not already one of them, so a person's command is learnt
even where the enumeration lacks it.

Data: HotpotQA training questions (never the 266 held-out ones), over each question's own 10
paragraphs (distractor) and over the pooled paragraphs; generated pydocs questions over the pydocs
corpus when --pydocs-questions names a file (`citeagent train pydocs-questions`).
"""
from __future__ import annotations

import json
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from citeenv.documents import normalize_ws

KEEP_INFO = ("question", "quotes", "candidates", "past_actions", "view", "page", "actions_left", "phase")


@dataclass
class CpuBCConfig:
    out: str = "runs/cpu_bc"
    seed: int = 0
    settings: str = "distractor,pooled"  # HotpotQA settings the roll-ins browse
    hotpot_limit: int = 0  # training questions used (0: all)
    pydocs_questions: str = ""  # a JSONL of generated pydocs questions (`citeagent train pydocs-questions`)
    pydocs_limit: int = 800
    demos: list[str] = field(default_factory=list)  # people's `citeagent browse` demonstrations
    rollins: int = 2  # roll-ins per question: the first follows the expert, the others explore
    explore: float = 0.3  # probability of a random candidate in an exploring roll-in
    max_actions: int = 12
    valid_fraction: float = 0.1  # training questions kept back to choose the epoch
    epochs: int = 8
    answer_epochs: int = 40
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    hidden: int = 256
    threads: int = 2
    # a trained policy directory: keep its browsing scorer and train only the answer head (no
    # roll-ins; minutes), for when the answer candidates or their features change
    init: str = ""
    # the answer reader whose proposals and scores the answer head reads ("shipped": the one in
    # citeagent/artifacts/reader; "" for none)
    reader: str = "shipped"

    def __post_init__(self) -> None:
        if isinstance(self.demos, str):
            self.demos = [d for d in self.demos.split(",") if d]
        problems = []
        if not 0 <= self.explore <= 1:
            problems.append(f"--explore {self.explore}: give a probability in [0, 1]")
        if self.rollins < 1:
            problems.append(f"--rollins {self.rollins}: at least 1")
        if not 0 < self.valid_fraction < 0.5:
            problems.append(f"--valid-fraction {self.valid_fraction}: give a fraction in (0, 0.5)")
        for s in self.setting_list:
            if s not in ("distractor", "pooled"):
                problems.append(f"--settings: unknown setting {s!r} (distractor, pooled)")
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            problems.append("--epochs, --batch-size and --lr must be positive")
        if self.pydocs_questions and not Path(self.pydocs_questions).is_file():
            problems.append(f"--pydocs-questions {self.pydocs_questions}: no such file; make it with "
                            "`citeagent train pydocs-questions --out FILE`")
        if self.init and not Path(self.init, "scorer.safetensors").is_file():
            problems.append(f"--init {self.init}: no trained policy there (scorer.safetensors is missing)")
        for d in self.demos:
            if not Path(d).is_file():
                problems.append(f"--demos {d}: no such file")
        if problems:
            raise ValueError("Invalid configuration:\n  " + "\n  ".join(problems))

    @property
    def setting_list(self) -> list[str]:
        return [s.strip() for s in self.settings.split(",") if s.strip()]


# ------------------------------------------------------------------------------- the expert
def _same(gold: str, text: str) -> bool:
    """A quote (or quote candidate) `text` is the gold sentence's evidence: equal once whitespace is
    normalised; or it holds the whole gold sentence (a quotable unit can be a signature line with
    its description's first sentence, citeenv.candidates.split_sentences, and so holds two gold
    sentences); or it is a piece of the gold sentence that covers most of it (a window's edge can
    cut a sentence)."""
    gold, text = normalize_ws(gold), normalize_ws(text)
    if gold in text:
        return bool(gold)
    return len(text) >= 0.6 * len(gold) and text in gold


def _gold_page(gold: dict, title: str, url: str) -> bool:
    return (bool(gold.get("url")) and gold["url"].split("#")[0] == url.split("#")[0]) or \
        (bool(gold.get("title")) and gold["title"] == title)


def expert_choice(info: dict, support: list[dict]) -> int:
    """The index of the candidate the expert takes. `support`: the gold sentences, each
    {"text", and "title" and/or "url" of its page}."""
    cands = info["candidates"]
    by_kind: dict[str, list[int]] = {}
    for i, c in enumerate(cands):
        by_kind.setdefault(c["kind"], []).append(i)
    quoted = [q["text"] for q in info["quotes"]]
    remaining = [g for g in support if not any(_same(g["text"], t) for t in quoted)]

    def first(kind: str) -> int | None:
        return by_kind.get(kind, [None])[0]

    if not remaining and first("End: Answer") is not None:
        return first("End: Answer")
    view = info.get("view")
    if view == "document":
        page = info.get("page") or {}
        for i in by_kind.get("Quote:", []):
            if any(_same(g["text"], cands[i]["text"]) for g in remaining):
                return i
        if any(_gold_page(g, page.get("title", ""), page.get("url", "")) for g in remaining):
            # the sentence is in another window: jump to where the question's names occur, else
            # read on (moves back to windows already read are not candidates)
            for kind in ("Find in page:", "Scrolled down", "Scrolled up"):
                if first(kind) is not None:
                    return first(kind)
        if first("Back") is not None:
            return first("Back")
    if view == "results":
        for i in by_kind.get("Clicked on link", []):
            c = cands[i]
            if not c["visited"] and any(_gold_page(g, c["title"], c["url"]) for g in remaining):
                return i
    for i in by_kind.get("Search", []):  # a gold page's title among the names offered as queries
        if any(g.get("title") and normalize_ws(g["title"]).lower() == cands[i]["text"].lower() for g in remaining):
            return i
    for i in by_kind.get("Search", []):
        if cands[i]["text"] == info["question"]:
            return i
    if first("End: Answer") is not None:
        return first("End: Answer")
    if view == "results":  # nothing quoted yet and no gold result: read the best-ranked unread one
        for i in by_kind.get("Clicked on link", []):
            if not cands[i]["visited"]:
                return i
    return first("End: Decline")


# ------------------------------------------------------------------------------- data
def hotpot_training_questions(limit: int = 0, start: int = 0) -> list[dict]:
    """HotpotQA's training questions (never the held-out ones) as gold-evidence records, each with
    its HotpotQA record (its 10 paragraphs make the distractor setting's corpus); `limit` of them
    (0: all) from position `start` of their fixed order."""
    from citeagent.data.gold_questions import hotpotqa_gold_questions
    from citeagent.eval.datasets import hotpot_question_id
    from citeenv.sources.hotpotqa import read_hotpotqa_records

    records = list(read_hotpotqa_records())
    by_id = {hotpot_question_id(r): r for r in records}
    out = hotpotqa_gold_questions(records)[start:][: limit or None]
    for q in out:
        q["record"] = by_id[q["id"]]
    return out


RL_SETTINGS = ("distractor", "pooled", "pydocs", "redteam")
# the corpus each setting browses, which decides how its answers are written (answer_form_for).
# redteam: HH-RLHF red-team prompts over the pooled HotpotQA pages, never the red-team evaluation's
# pages, so what PPO learns there is tested on pages it never saw.
SETTING_CORPUS = {"distractor": "hotpotqa:<question>", "pooled": "hotpotqa", "pydocs": "pydocs", "redteam": "hotpotqa"}


def setting_answer_form(setting: str) -> str | None:
    """How a setting's answers are written; None (the policy's own form) for a pool of its own."""
    from citeagent.policies.candidate import answer_form_for

    return answer_form_for(SETTING_CORPUS[setting]) if setting in SETTING_CORPUS else None


def rl_settings(settings: str, redteam: bool = False) -> list[str]:
    """The names in an RL trainer's --settings, refused unless each is one of RL_SETTINGS. Only
    PPO (redteam=True) takes redteam: its questions have no gold answers to compare or rank by."""
    names = [s.strip() for s in settings.split(",") if s.strip()]
    allowed = RL_SETTINGS if redteam else tuple(n for n in RL_SETTINGS if n != "redteam")
    if not names or any(n not in allowed for n in names):
        hint = "" if redteam or "redteam" not in names else " (redteam is for PPO only: its prompts have no gold answers)"
        raise ValueError(f"--settings {settings!r}: use {', '.join(allowed[:-1])} and/or {allowed[-1]}, "
                         f"comma-separated{hint}")
    return names


def question_pools(settings: str, hotpot_limit: int = 0, pydocs_questions: str = "", pydocs_limit: int = 800,
                   seed: int = 0, redteam: bool = False, hotpot_from: int = 0,
                   pydocs_from: int = 0) -> dict[str, tuple[list[dict], object]]:
    """The RL trainers' training questions: setting -> (questions, question index -> Backend).
    Settings: distractor and pooled (HotpotQA's training questions), pydocs (the generated pydocs
    questions, shuffled by `seed` and cut to the limit: the ones BC used when it had the same
    seed), redteam (PPO only: the red-team prompts of eval.datasets.redteam_training_questions
    over the pooled HotpotQA pages).
    hotpot_from / pydocs_from: start at that position of the questions' order, past the ones a BC
    trained on fewer questions saw (pipeline --demo-questions), so RL learns on new questions."""
    names = rl_settings(settings, redteam)
    if "pydocs" in names and not (pydocs_questions and Path(pydocs_questions).is_file()):
        raise ValueError("--settings pydocs needs --pydocs-questions FILE (`citeagent train pydocs-questions --out FILE`)")
    pools = {}
    needs_hotpot = bool(set(names) - {"pydocs", "redteam"})
    hot = hotpot_training_questions(hotpot_limit, hotpot_from) if needs_hotpot else []
    if needs_hotpot and not hot:
        raise ValueError(f"--hotpot-from {hotpot_from}: no HotpotQA training questions from there; start earlier")
    pooled = None  # the pooled pages' index, built once for pooled and redteam
    for name in names:
        if name in ("pooled", "redteam") and pooled is None:
            pooled = _backends(None, [], "pooled")
        if name == "pydocs":
            pools[name] = _pydocs_group(CpuBCConfig(pydocs_questions=pydocs_questions, pydocs_limit=pydocs_limit,
                                                    seed=seed), start=pydocs_from)
        elif name == "redteam":
            from citeagent.eval.datasets import redteam_training_questions

            red = redteam_training_questions()
            random.Random(seed).shuffle(red)  # seeded like the pydocs pool; the runs on record drew from this order
            pools[name] = (red, pooled)
        else:
            pools[name] = (hot, pooled if name == "pooled" else _backends(None, hot, name))
    return pools


def _backends(cfg: CpuBCConfig, questions: list[dict], setting: str):
    from citeenv.index import in_memory_index
    from citeenv.local import LocalBackend
    from citeenv.sources.hotpotqa import pooled_corpus, question_corpus

    if setting == "pooled":
        corpus = pooled_corpus()
        shared = LocalBackend(corpus, in_memory_index(corpus))
        return lambda i: shared
    return lambda i: (lambda c: LocalBackend(c, in_memory_index(c)))(question_corpus(questions[i]["record"]))


def collect_states(cfg: CpuBCConfig, questions: list[dict], backend_for, rng: random.Random, explore: float,
                   progress=None) -> list[tuple[dict, int]]:
    """Roll-ins in the real environment; every browsing state with the expert's label."""
    from citeenv.browser import BrowserConfig
    from citeenv.candidates import CandidateConfig
    from citeenv.gym_env import BatchedTextBrowserEnv

    from citeagent.policies.candidate import CandidatePolicyConfig, allowed_candidates

    browser = BrowserConfig(max_actions=cfg.max_actions, candidates=CandidateConfig())
    max_quotes = CandidatePolicyConfig().max_quotes
    states = []
    for lo in range(0, len(questions), 32):
        idx = list(range(lo, min(lo + 32, len(questions))))
        env = BatchedTextBrowserEnv([backend_for(i) for i in idx], config=browser)
        obs, infos = env.reset([questions[i]["question"] for i in idx], seed=rng.randrange(1 << 30))
        while env.active():
            actions = {}
            for r in env.active():
                info = infos[r]
                if info["phase"] != "browse":
                    actions[r] = "answer [1]" if info["quotes"] else "answer"
                    continue
                allowed_candidates(info, max_quotes)
                label = expert_choice(info, questions[idx[r]]["support"])
                states.append(({k: info[k] for k in KEEP_INFO if k in info}, label))
                j = label
                if rng.random() < explore:
                    choices = [i for i, c in enumerate(info["candidates"]) if c["kind"] != "End: Decline"]
                    j = rng.choice(choices) if choices else label
                actions[r] = info["candidates"][j]["command"]
            for r, (o, _, _, _, info) in env.step(actions).items():
                obs[r], infos[r] = o, info
        if progress:
            progress.update(len(idx))
    return states


# ------------------------------------------------------------------------------- training
def train_scorer(cfg: CpuBCConfig, train_x: list[np.ndarray], train_y: list[int], valid_x: list[np.ndarray],
                 valid_y: list[int], log=print):
    """Cross-entropy over each state's candidates; the epoch with the best validation accuracy is kept."""
    import torch

    from citeagent.policies.candidate import Scorer, masked_log_softmax, pad

    torch.manual_seed(cfg.seed)
    scorer = Scorer(cfg.hidden)
    opt = torch.optim.AdamW(scorer.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    vx, vm = pad(valid_x)
    vy = torch.tensor(valid_y)
    best, best_state, history = -1.0, None, []
    order = np.arange(len(train_x))
    rng = np.random.default_rng(cfg.seed)
    for epoch in range(cfg.epochs):
        scorer.train()
        rng.shuffle(order)
        total = 0.0
        for lo in range(0, len(order), cfg.batch_size):
            rows = order[lo: lo + cfg.batch_size]
            x, m = pad([train_x[i] for i in rows])
            y = torch.tensor([train_y[i] for i in rows])
            loss = -masked_log_softmax(scorer(x), m).gather(1, y[:, None]).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(rows)
        scorer.eval()
        with torch.no_grad():
            logp = masked_log_softmax(scorer(vx), vm)
            acc = float((logp.argmax(1) == vy).float().mean())
            vloss = float(-logp.gather(1, vy[:, None]).mean())
        history.append({"epoch": epoch + 1, "train_loss": total / len(order), "valid_loss": vloss, "valid_accuracy": acc})
        log(f"epoch {epoch + 1}: train loss {total / len(order):.4f}, valid loss {vloss:.4f}, valid accuracy {acc:.4f}")
        if acc > best:
            best, best_state = acc, {k: v.clone() for k, v in scorer.state_dict().items()}
    scorer.load_state_dict(best_state)
    return scorer.eval(), history


def answer_examples(questions: list[dict], featurize, rng: random.Random, policy_config=None) -> list[tuple]:
    """(features of the candidate answers, the index of the best one, the question, the candidates'
    texts) for every question whose gold sentences hold a candidate with answer F1 >= 0.5.

    The quotes are what the policy would quote: HotpotQA's gold sentences and, half the time, one
    more sentence of a gold paragraph; a documentation question's gold sentences as the browser's
    quotable units (a signature line with its first sentence, `quote_units`) and, three times in
    four, one or two neighbouring units of the same page (the entries around the right one, which
    a policy that found the right place also quotes), in random order: the answer head must learn
    which quote answers, not where the answer usually stands."""
    from citeagent.eval.answer_metrics import best_token_f1
    from citeagent.policies.candidate import CandidatePolicyConfig, propose_answers
    from citeagent.policies.spans import answer_candidates, span_features

    plans = []
    for q in questions:
        texts = [g["text"] for g in q["support"]]
        record = q.get("record")
        if record and rng.random() < 0.5:
            paragraphs = {t: sents for t, sents in record["context"]}
            extra = [normalize_ws(x) for g in q["support"] for x in paragraphs.get(g.get("title"), [])
                     if normalize_ws(x) and normalize_ws(x) not in texts]
            if extra:
                texts.insert(rng.randrange(len(texts) + 1), rng.choice(extra))
        elif not record and all("doc_id" in g and "start" in g for g in q["support"]):
            units = quote_units(q["support"], rng, policy_config)
            texts = units or texts
        quotes = [{"n": i + 1, "text": t, "title": "", "url": ""} for i, t in enumerate(texts)]
        plans.append((q, quotes))
    proposed = propose_answers(policy_config or CandidatePolicyConfig(), [(q["question"], quotes) for q, quotes in plans])
    kept = []
    for (q, quotes), p in zip(plans, proposed):
        cands = answer_candidates(q["question"], quotes, proposed=p)
        f1 = [best_token_f1(c.text, q["answers"]) for c in cands]
        if cands and max(f1) >= 0.5:
            kept.append((q, quotes, cands, int(np.argmax(f1)), p))
    featurize.embed([t for q, quotes, cands, _, _ in kept for t in [q["question"], *(c.text for c in cands), *(x["text"] for x in quotes)]])
    return [(span_features(q["question"], quotes, cands, featurize.embed, p), label, q, [c.text for c in cands])
            for q, quotes, cands, label, p in kept]


_DOCS: dict = {}


def quote_units(support: list[dict], rng: random.Random, policy_config=None, neighbours: int = 4) -> list[str]:
    """The quotable units (citeenv.candidates.split_sentences, as the browser splits a page) that
    hold a documentation question's gold sentences, with up to two distractor units from the
    `neighbours` units either side, shuffled in. [] when a gold page is not in the pydocs corpus."""
    from citeenv.candidates import CandidateConfig, split_sentences
    from citeenv.sources import load_corpus

    if "pydocs" not in _DOCS:
        _DOCS["pydocs"] = load_corpus("pydocs")
    join = CandidateConfig(**(policy_config.candidates if policy_config else {})).signature_join_chars
    doc = _DOCS["pydocs"].get(support[0]["doc_id"])
    if doc is None or any(g["doc_id"] != doc.id for g in support):
        return []
    units = split_sentences(doc.text, join)
    gold = [i for i, (a, b) in enumerate(units) if any(a < g["end"] and b > g["start"] for g in support)]
    if not gold:
        return []
    near = [i for i in range(max(0, gold[0] - neighbours), min(len(units), gold[-1] + neighbours + 1))
            if i not in gold and 12 <= units[i][1] - units[i][0] <= 1000]
    chosen = list(gold)
    if near and rng.random() < 0.75:
        for i in rng.sample(near, min(len(near), rng.choice((1, 2)))):
            chosen.insert(rng.randrange(len(chosen) + 1), i)
    return [normalize_ws(doc.text[units[i][0]:units[i][1]]) for i in chosen]


def train_answer_head(cfg: CpuBCConfig, scorer, train: list, valid: list, log=print) -> list[dict]:
    """Cross-entropy of the best candidate answer, the answer head alone; the epoch with the best
    validation answer F1 (of the argmax) is kept."""
    import torch

    from citeagent.eval.answer_metrics import best_token_f1
    from citeagent.policies.candidate import N_ANSWER_FEATURES, masked_log_softmax, pad

    params = list(scorer.answer_head.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    rng = np.random.default_rng(cfg.seed)
    vx, vm = pad([ex[0] for ex in valid], N_ANSWER_FEATURES)
    best, best_state, history = -1.0, None, []
    for epoch in range(cfg.answer_epochs):
        order = rng.permutation(len(train))
        for lo in range(0, len(order), cfg.batch_size):
            rows = [train[i] for i in order[lo: lo + cfg.batch_size]]
            x, m = pad([ex[0] for ex in rows], N_ANSWER_FEATURES)
            y = torch.tensor([ex[1] for ex in rows])
            loss = -masked_log_softmax(scorer.answer_scores(x), m).gather(1, y[:, None]).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            pick = masked_log_softmax(scorer.answer_scores(vx), vm).argmax(1).tolist()
        f1 = float(np.mean([best_token_f1(texts[j], q["answers"]) for (_, _, q, texts), j in zip(valid, pick)]))
        acc = float(np.mean([j == ex[1] for ex, j in zip(valid, pick)]))
        history.append({"epoch": epoch + 1, "valid_answer_f1": f1, "valid_pick_accuracy": acc})
        log(f"answer head, epoch {epoch + 1}: validation answer F1 {f1:.4f} (best candidate picked {acc:.4f})")
        if f1 > best:
            best, best_state = f1, {k: v.clone() for k, v in scorer.answer_head.state_dict().items()}
    scorer.answer_head.load_state_dict(best_state)
    return history


def run(cfg: CpuBCConfig) -> dict:
    import torch
    from tqdm import tqdm

    from citeagent.policies.candidate import CandidatePolicy, open_embedding_cache
    from citeenv.search.encoder import load_encoder

    torch.set_num_threads(cfg.threads)
    t0 = time.time()
    rng = random.Random(cfg.seed)
    if cfg.init:
        return _answer_only(cfg, t0)
    groups: list[tuple[str, list[dict], object]] = []
    hot = hotpot_training_questions(cfg.hotpot_limit)
    for setting in cfg.setting_list:
        groups.append((f"hotpotqa-{setting}", hot, _backends(cfg, hot, setting)))
    if cfg.pydocs_questions:
        groups.append(("pydocs", *_pydocs_group(cfg)))
    train_states, valid_states, counts = [], [], {}
    if cfg.demos:
        got, counts["demos"] = demo_states(cfg.demos, cfg.max_actions)
        train_states.extend(got)
    for name, questions, backend_for in groups:
        n_valid = max(1, int(len(questions) * cfg.valid_fraction))
        split = {"valid": range(len(questions) - n_valid, len(questions)), "train": range(len(questions) - n_valid)}
        with tqdm(total=len(questions) * cfg.rollins, desc=f"roll-ins {name}", file=sys.stderr) as bar:
            for part, rows in split.items():
                sub = [questions[i] for i in rows]
                sub_backend = (lambda rows: lambda i: backend_for(rows[i]))(list(rows))
                for k in range(cfg.rollins):
                    got = collect_states(cfg, sub, sub_backend, rng, 0.0 if k == 0 else cfg.explore, bar)
                    (valid_states if part == "valid" else train_states).extend(got)
        counts[name] = {"questions": len(questions), "valid_questions": n_valid}
    featurize = open_embedding_cache(load_encoder())
    feats = []
    for part in (train_states, valid_states):
        xs = []
        for lo in tqdm(range(0, len(part), 256), desc="features", file=sys.stderr):
            xs.extend(featurize([s for s, _ in part[lo: lo + 256]]))
        feats.append(xs)
    # the answer examples draw from their own generator, so --init reproduces this answer head
    answers = _answer_data(cfg, [(name, qs) for name, qs, _ in groups if name != "hotpotqa-pooled"], featurize,
                           random.Random(cfg.seed))
    t_data = time.time() - t0
    # A small MLP trains fastest on one thread; two threads stall each other on a busy machine.
    torch.set_num_threads(1)
    scorer, history = train_scorer(cfg, feats[0], [y for _, y in train_states], feats[1], [y for _, y in valid_states])
    answer_history = train_answer_head(cfg, scorer, answers["train"], answers["valid"])
    policy = CandidatePolicy(scorer, featurize.encoder, _policy_config(cfg))
    policy.save(cfg.out)
    report = {"config": asdict(cfg), "data": counts, "train_states": len(train_states), "valid_states": len(valid_states),
              "history": history, "best_valid_accuracy": max(h["valid_accuracy"] for h in history),
              "answer_examples": {k: len(v) for k, v in answers.items()}, "answer_history": answer_history,
              "best_valid_answer_f1": max(h["valid_answer_f1"] for h in answer_history),
              "seconds_data": round(t_data, 1), "seconds_total": round(time.time() - t0, 1)}
    Path(cfg.out, "cpu_bc_report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report


def _answer_groups(cfg: CpuBCConfig) -> list[tuple[str, list[dict]]]:
    """The questions whose gold sentences teach the answer head (HotpotQA once, whatever the settings)."""
    groups = [("hotpotqa", hotpot_training_questions(cfg.hotpot_limit))]
    if cfg.pydocs_questions:
        groups.append(("pydocs", _pydocs_group(cfg)[0]))
    return groups


def _answer_data(cfg: CpuBCConfig, groups, featurize, rng: random.Random) -> dict:
    answers, config = {"train": [], "valid": []}, _policy_config(cfg)
    for _, questions in groups:
        n_valid = max(1, int(len(questions) * cfg.valid_fraction))
        answers["train"] += answer_examples(questions[:len(questions) - n_valid], featurize, rng, config)
        answers["valid"] += answer_examples(questions[len(questions) - n_valid:], featurize, rng, config)
    return answers


def _policy_config(cfg: CpuBCConfig, base: dict | None = None):
    from citeagent.policies.candidate import CandidatePolicyConfig

    known = CandidatePolicyConfig.__dataclass_fields__
    return CandidatePolicyConfig(**({k: v for k, v in (base or {}).items() if k in known}
                                    | {"hidden": (base or {}).get("hidden", cfg.hidden), "reader": cfg.reader}))


def _answer_only(cfg: CpuBCConfig, t0: float) -> dict:
    """--init: the browsing scorer of a trained policy, a new answer head trained on this code's
    answer candidates."""
    import torch
    from safetensors.torch import load_file

    from citeagent.policies.candidate import CandidatePolicy, Scorer, open_embedding_cache
    from citeenv.search.encoder import load_encoder

    meta = json.loads(Path(cfg.init, "policy.json").read_text(encoding="utf-8"))
    torch.manual_seed(cfg.seed)  # as train_scorer does: the same initial answer head as a whole run
    scorer = Scorer(meta["config"]["hidden"])
    weights = {k: v for k, v in load_file(str(Path(cfg.init, "scorer.safetensors"))).items()
               if not k.startswith(("answer_head.", "answer_value."))}
    missing = scorer.load_state_dict(weights, strict=False).missing_keys
    assert all(k.startswith(("answer_head.", "answer_value.")) for k in missing), missing
    featurize = open_embedding_cache(load_encoder())
    answers = _answer_data(cfg, _answer_groups(cfg), featurize, random.Random(cfg.seed))
    torch.set_num_threads(1)
    answer_history = train_answer_head(cfg, scorer, answers["train"], answers["valid"])
    CandidatePolicy(scorer.eval(), featurize.encoder, _policy_config(cfg, meta["config"])).save(cfg.out)
    report = {"config": asdict(cfg), "init": cfg.init, "answer_examples": {k: len(v) for k, v in answers.items()},
              "answer_history": answer_history,
              "best_valid_answer_f1": max(h["valid_answer_f1"] for h in answer_history),
              "seconds_total": round(time.time() - t0, 1)}
    Path(cfg.out, "cpu_bc_report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report


def demo_states(paths: list[str], max_actions: int) -> tuple[list[tuple[dict, int]], dict]:
    """People's (or the scripted expert's) demonstrations in `citeagent browse`'s format, replayed in
    the environment to recover each state's candidates: every accepted browsing step is a state
    labelled with the person's command, which joins the candidates when the enumeration lacks it."""
    from citeagent.backend import BackendOptions, make_backend
    from citeagent.browse import load_demonstrations
    from citeenv.browser import Browser, BrowserConfig
    from citeenv.candidates import Candidate, CandidateConfig
    from citeenv.commands import CommandError, parse_command

    states, stats = [], {"episodes": 0, "steps": 0, "added_candidates": 0, "skipped_episodes": 0}
    backends = {}
    for path in paths:
        for rec in load_demonstrations(path):
            corpus = rec.get("corpus") or "pydocs"
            try:
                if corpus not in backends:
                    backends[corpus] = make_backend(BackendOptions(corpus=corpus))
                browser = Browser(backends[corpus], BrowserConfig(max_actions=max(max_actions, len(rec["steps"])),
                                                                  candidates=CandidateConfig()))
                browser.reset(rec["question"])
            except Exception as e:  # noqa: BLE001 - a demonstration whose corpus cannot be opened is skipped, counted
                print(f"warning: {path}: a demonstration on corpus {corpus!r} cannot be replayed ({e}); skipped",
                      file=sys.stderr)
                stats["skipped_episodes"] += 1
                continue
            stats["episodes"] += 1
            for step in rec["steps"]:
                if browser.state.phase != "browse":
                    break
                info = browser.info()
                action = step["action"].strip()
                if step.get("error") is None:
                    cmd = parse_command(action)
                    if isinstance(cmd, CommandError):  # cannot be: the browser accepted it; skip anyway
                        browser.step(action)
                        continue
                    cmds = [c["command"] for c in info["candidates"]]
                    if str(cmd) not in cmds:
                        text = cmd.arg if cmd.kind in ("Search", "Quote:", "Find in page:") else ""
                        info["candidates"].insert(len(cmds) - 1, Candidate(str(cmd), cmd.kind, text).to_dict())
                        cmds.insert(len(cmds) - 1, str(cmd))
                        stats["added_candidates"] += 1
                    states.append(({k: info[k] for k in KEEP_INFO if k in info}, cmds.index(str(cmd))))
                    stats["steps"] += 1
                browser.step(action)
    return states, stats


def _pydocs_group(cfg: CpuBCConfig, start: int = 0):
    from citeagent.data.gold_questions import load_gold_questions
    from citeagent.backend import BackendOptions, make_backend

    questions = load_gold_questions(cfg.pydocs_questions)
    random.Random(cfg.seed).shuffle(questions)
    questions = questions[start:][: cfg.pydocs_limit or None]
    if not questions:
        raise ValueError(f"{cfg.pydocs_questions}: no generated pydocs questions from position {start}; "
                         "generate more with `citeagent train pydocs-questions` or start earlier")
    shared = make_backend(BackendOptions(corpus="pydocs"))
    return questions, (lambda i: shared)


def main(cfg) -> int:
    """`citeagent train`'s entry: the run's summary as JSON on stdout."""
    print(json.dumps({k: v for k, v in run(cfg).items() if k not in ("history", "config")}, indent=2))
    return 0
