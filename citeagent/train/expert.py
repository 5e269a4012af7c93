"""A scripted expert that browses HotpotQA with the gold evidence, for behaviour cloning.

WebGPT cloned people's browsing; where a data set marks its evidence (HotpotQA's supporting
sentences) a script can demonstrate the same behaviour at any scale. Per question the expert:

    Search <question>                        (noise: first a poor query, a few words of it)
    for each gold title, in supporting_facts order:
        Clicked on link <id>                 (or Search <title> first when no result has it;
                                              noise: first click a wrong result, then Back)
        Scrolled down 1 / Find in page: ...  (when the sentence is not in the current window)
        Quote: <gold sentence>               (verbatim from the window, as the decoder allows)
        Back                                 (to the results, before the next title)
    End: Answer
    <gold answer> [1][2]

It drives the real environment, so each recorded observation is exactly what the policy will see,
and every action is checked to be accepted. The expert never makes a wrong quote: quotes cannot
be undone, so a demonstrated "mistake" there would teach the policy to keep bad evidence.
Demonstrations are written in `citeagent browse`'s format (citeagent/browse.py), with
"source": "expert".
"""
from __future__ import annotations

import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

from citeenv.browser import BrowserConfig
from citeenv.command_spec import QUOTE_SEP
from citeenv.documents import normalize_ws
from citeenv.render import PageView

FIND_WORDS = (3, 8)  # a Find needle is the shortest unique prefix of this many words


@dataclass
class ExpertStats:
    episodes: int = 0  # complete demonstrations returned
    steps: int = 0  # actions in them (= training examples)
    skipped: int = 0  # questions with no demonstration
    skip_reasons: Counter = field(default_factory=Counter)
    wrong_clicks: int = 0  # noise: a non-gold result opened, then Back
    poor_queries: int = 0  # noise: a few words of the question searched first
    facts_missing: int = 0  # supporting facts whose sentence id is outside the paragraph (HotpotQA has a few)

    def summary(self) -> str:
        why = ", ".join(f"{n} {r}" for r, n in self.skip_reasons.most_common())
        return (f"{self.episodes} episodes, {self.steps} steps; {self.skipped} questions skipped"
                + (f" ({why})" if why else "") + f"; noise: {self.wrong_clicks} wrong clicks, "
                f"{self.poor_queries} poor queries")


class Skip(Exception):
    """A question the expert cannot demonstrate (its gold page is unreachable, the budget ran out)."""


def _cut(text: str, max_chars: int) -> str:
    """text cut at a word boundary to at most max_chars characters and max_chars UTF-8 bytes (the
    decoder counts bytes, the browser characters)."""
    if len(text) <= max_chars and len(text.encode()) <= max_chars:
        return text
    out = text[:max_chars]
    while len(out.encode()) > max_chars:
        out = out[:-1]
    head = out.rsplit(" ", 1)[0] if " " in out else out
    return head.rstrip()


class _Episode:
    """One question in the env; `do` records a step and insists the env accepted it."""

    def __init__(self, backend, config: BrowserConfig, record: dict):
        from citeenv.gym_env import TextBrowserEnv  # gymnasium: only once demonstrations are made, not for --help

        self.env = TextBrowserEnv(backend, config)
        self.obs, self.info = self.env.reset(options={"question": record["question"]})
        self.steps: list[dict] = []

    def do(self, action: str, phase: str = "browse", noise: bool = False) -> None:
        """noise: the action is a deliberate mistake. It is recorded (later observations show it, so
        the policy learns the recovery) and flagged, so behaviour cloning never trains on it."""
        if self.info["phase"] != phase:
            # the env moved to answering at the action limit (WebGPT's rule) before the expert was done
            raise Skip("action budget")
        obs, _, term, trunc, info = self.env.step(action)
        self.steps.append({"observation": self.obs, "phase": self.info["phase"], "action": action,
                           "error": info["error"]} | ({"noise": True} if noise else {}))
        assert info["error"] is None, f"the env rejected the expert's {action!r}: {info['error']}"
        self.obs, self.info = obs, info

    def link_for(self, title: str) -> int | None:
        for r in self.info.get("results", []):
            if r["title"] == title:
                return r["id"]
        return None


def _sentence_piece(sentence: str, view: PageView) -> tuple[int, str] | None:
    """(window, text): the largest part of `sentence` one window shows, as a quote of it taken from
    that window must be. A sentence cut by a window edge shows as a prefix at the window's end or a
    suffix at its start. None when no window shows at least half of it (the gold judge counts a
    quote of at least half a sentence as quoting it)."""
    best = None
    for w in range(view.n_windows):
        q = view.quotable(w)
        if sentence in q:
            return w, sentence
        for k in range(len(sentence) - 1, 0, -1):  # longest prefix at the window's end
            if sentence[k - 1] != " " and q.endswith(sentence[:k]):
                piece = sentence[:k]
                break
        else:
            piece = ""
        for k in range(1, len(sentence)):  # longest suffix at the window's start, from a word start
            if sentence[k - 1] == " " and q.startswith(sentence[k:]):
                if len(sentence) - k > len(piece):
                    piece = sentence[k:]
                break
        if piece and (best is None or len(piece) > len(best[1])):
            best = (w, piece)
    if best is None or len(best[1]) < 0.5 * len(sentence):
        return None
    return best


def _find_needle(piece: str, page_text: str) -> str:
    """The first words of `piece`, as few as make them unique on the page (case-insensitive, as the
    browser's Find is)."""
    words = piece.split(" ")
    low = page_text.lower()
    lo, hi = FIND_WORDS
    for n in range(min(lo, len(words)), min(hi, len(words)) + 1):
        needle = " ".join(words[:n])
        if low.count(needle.lower()) == 1:
            return _cut(needle, 120)
    return _cut(" ".join(words[:hi]), 120)


def _go_to_window(ep: _Episode, target: int, piece: str, page_text: str) -> None:
    """Move the open page's window to `target`: one scroll when it is the next window, else Find
    (its first match may be elsewhere on the page; scrolling corrects that, as a person would)."""
    here = ep.info["page"]["window"]
    if target == here:
        return
    if target == here + 1:
        ep.do("Scrolled down 1")
        return
    ep.do(f"Find in page: {_find_needle(piece, page_text)}")
    while ep.info["page"]["window"] != target:
        here = ep.info["page"]["window"]
        n = min(3, abs(target - here))
        ep.do(f"Scrolled {'down' if target > here else 'up'} {n}")


def _open_gold(ep: _Episode, title: str, gold_titles: set[str], config: BrowserConfig, rng: random.Random,
               noise: float, stats: ExpertStats) -> None:
    link = ep.link_for(title)
    if link is None:  # not among the results: search the title itself, a realistic recovery
        ep.do(f"Search {_cut(normalize_ws(title), config.max_query_chars)}")
        link = ep.link_for(title)
        if link is None:
            raise Skip("gold page not found")
    wrong = [r["id"] for r in ep.info.get("results", []) if r["title"] not in gold_titles]
    if wrong and rng.random() < noise:
        ep.do(f"Clicked on link {rng.choice(wrong)}", noise=True)
        ep.do("Back")
        stats.wrong_clicks += 1
    ep.do(f"Clicked on link {link}")


def demonstrate(record: dict, backend, config: BrowserConfig, rng: random.Random, noise: float,
                stats: ExpertStats) -> tuple[list[dict], dict]:
    """The steps of one expert episode (raises Skip when the question cannot be demonstrated)."""
    ep = _Episode(backend, config, record)
    question = normalize_ws(record["question"])
    paragraphs = {t: s for t, s in record["context"]}
    facts: dict[str, list[int]] = {}  # title -> sentence ids, titles in supporting_facts order
    for title, sid in record["supporting_facts"]:
        if title not in paragraphs or not 0 <= int(sid) < len(paragraphs[title]):
            stats.facts_missing += 1
            continue
        facts.setdefault(title, [])
        if int(sid) not in facts[title]:
            facts[title].append(int(sid))
    if not facts:
        raise Skip("no usable supporting facts")

    words = question.split(" ")
    if len(words) > 4 and rng.random() < noise:
        ep.do(f"Search {' '.join(words[:rng.randint(2, 3)])}", noise=True)
        stats.poor_queries += 1
    ep.do(f"Search {_cut(question, config.max_query_chars)}")

    quoted: set[str] = set()
    titles = list(facts)
    for i, title in enumerate(titles):
        _open_gold(ep, title, set(titles), config, rng, noise, stats)
        page = backend.open(ep.info["page"]["url"])  # the expert's privilege: it sees the whole page
        view = PageView(page, config.window_chars)
        page_text = view.normalized.text
        for sid in sorted(facts[title]):  # page order, so the window mostly moves forward
            sentence = normalize_ws(paragraphs[title][sid])
            if not sentence:
                continue
            found = _sentence_piece(sentence, view)
            if found is None:
                raise Skip("gold sentence not on the page")
            window, piece = found
            piece = _cut(piece, config.max_quote_chars)
            if piece in quoted:  # the same sentence twice in the facts
                continue
            if QUOTE_SEP in piece:  # the browser would read it as Quote: <start>━<end>
                raise Skip("quote separator in a gold sentence")
            _go_to_window(ep, window, piece, page_text)
            # what the policy's decoder may quote: text of the current window
            assert piece in ep.info["quotable_text"], (title, window, piece)
            ep.do(f"Quote: {piece}")
            quoted.add(piece)
        if i < len(titles) - 1:
            ep.do("Back")
    ep.do("End: Answer")
    markers = "".join(f"[{n}]" for n in ep.info["quote_numbers"])
    ep.do(normalize_ws(f"{normalize_ws(record['answer'])} {markers}"), phase="answer")
    if "answer" not in ep.info:
        raise Skip("answer not accepted")
    return ep.steps, ep.info["answer"]


def expert_demonstrations(records: list[dict], backend, browser: BrowserConfig, noise: float = 0.2,
                          seed: int = 0, corpus: str = "hotpotqa") -> tuple[list[dict], ExpertStats]:
    """(demonstrations in the `citeagent browse` format, stats) for HotpotQA records (official
    schema). Noise is seeded per question, so a record's episode does not depend on the others."""
    if not 0.0 <= noise <= 1.0:
        raise ValueError(f"noise is a probability per opportunity, between 0 and 1; got {noise}")
    stats = ExpertStats()
    demos = []
    for record in records:
        rng = random.Random(f"{seed}:{record['_id']}")
        mine = ExpertStats()  # this episode's noise, counted only if the episode is kept
        try:
            steps, answer = demonstrate(record, backend, browser, rng, noise, mine)
        except Skip as e:
            stats.skipped += 1
            stats.skip_reasons[str(e)] += 1
            continue
        stats.wrong_clicks += mine.wrong_clicks
        stats.poor_queries += mine.poor_queries
        stats.facts_missing += mine.facts_missing
        demos.append({"question": record["question"], "corpus": corpus, "created": time.time(), "steps": steps,
                      "complete": True, "answer": answer, "source": "expert", "id": record["_id"]})
        stats.episodes += 1
        stats.steps += len(steps)
    return demos, stats


# --- citeagent train demos --------------------------------------------------------------------------------

@dataclass
class DemosConfig:
    dataset: str = field(default="hotpotqa", metadata={"help": "data set with gold evidence",
                                                       "choices": ["hotpotqa"]})
    questions: int = field(default=200, metadata={"help": "first N training questions (never held-out ones)"})
    noise: float = field(default=0.2, metadata={"help": "probability per opportunity of a wrong click or a poor "
                                                        "first query, then the recovery"})
    max_actions: int = field(default=20, metadata={"help": "the browser's action budget"})
    seed: int = 0
    out: str = field(default="demos.jsonl", metadata={"help": "JSONL file the episodes are appended to"})

    def __post_init__(self):
        if self.questions < 1:
            raise ValueError(f"--questions must be at least 1 (got {self.questions})")
        if self.max_actions < 4:
            raise ValueError(f"--max-actions must be at least 4 (search, click, quote, answer); got {self.max_actions}")


def run_demos(config: DemosConfig) -> int:
    """`citeagent train demos`: the first N training questions browsed by the scripted expert."""
    from citeagent.backend import BackendOptions, make_backend
    from citeagent.browse import save_demonstration
    from citeagent.train import CPU_BROWSER, hotpotqa_split
    from citeenv.sources.hotpotqa import read_hotpotqa_records

    train, _heldout = hotpotqa_split(list(read_hotpotqa_records()))
    records = train[: config.questions]
    backend = make_backend(BackendOptions(corpus="hotpotqa"))
    browser = BrowserConfig(**CPU_BROWSER, max_actions=config.max_actions)
    demos, stats = expert_demonstrations(records, backend, browser, noise=config.noise, seed=config.seed)
    for d in demos:
        save_demonstration(config.out, d)
    print(f"{stats.summary()}; appended to {config.out}", file=sys.stderr)
    return 0
