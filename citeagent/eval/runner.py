"""`citeagent eval`: run a policy (or read answers made elsewhere) on a data set, score every
answer, and write the run:

    <out>/config.json     what was run
    <out>/records.jsonl   one line per question: question, trace, answer, quotes, metrics, reasons
    <out>/summary.json    means with bootstrap 95% intervals, decline curves, failure counts
    <out>/report.html     plots and the worst answers, for a person to read

Records are appended as each batch finishes, so an interrupted run resumes (`resume=True`)
from the questions it has not finished.
"""
from __future__ import annotations

import json
import logging
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

from citeagent.answer import Answer
from citeagent.eval.datasets import DATASETS, EvalDataset, EvalExample, example_corpus, load_dataset
from citeagent.eval.scoring import ScoringConfig, score_answer
from citeagent.eval.summary import summarize
from citeagent.policies import ANSWER_FORM_CHOICES, DEFAULT_POLICY
from citeenv.jsonl import read_jsonl

log = logging.getLogger(__name__)

RECORDS = "records.jsonl"
SUMMARY = "summary.json"
CONFIG = "config.json"
REPORT = "report.html"
# Changing any of these between an interrupted run and its resumption would mix two runs.
IDENTITY = ("dataset", "policy", "predictions", "corpus", "search", "web", "judge", "reward_model", "max_actions", "seed",
            "best_of", "temperature", "sample", "safety", "combined_reward", "answer_form")


def _help(text: str, **kw) -> dict:
    return {"help": text, **kw}


@dataclass
class EvalConfig:
    dataset: str = field(default="hotpotqa", metadata=_help(
        f"{', '.join(DATASETS)}, or a JSONL path of {{question, answers[, supporting_facts | urls, id, corpus]}}"))
    policy: str = field(default=DEFAULT_POLICY, metadata=_help("cpu (the trained CPU-scale agent), baseline, lm, a trained "
                                                           "policy directory, or a model name/path"))
    predictions: str | None = field(default=None, metadata=_help(
        "score this JSONL of {question, answer, quotes[, id, score, declined]} instead of running a policy; an "
        "earlier run's records.jsonl scores that run again (e.g. with another --judge)", metavar="FILE"))
    limit: int | None = field(default=None, metadata=_help("evaluate the first N questions"))
    offset: int = field(default=0, metadata=_help(
        "skip the first N questions (or prediction lines), e.g. to split a run across processes, each with its "
        "own --out; `cat` their records.jsonl into one directory and run it again with --resume to summarise "
        "them together", metavar="N"))
    out: str | None = field(default=None, metadata=_help("run directory (default: runs/eval/<dataset>__<policy>)"))
    resume: bool = field(default=False, metadata=_help("continue an interrupted run in --out, skipping finished "
                                                       "questions"))
    judge: str | None = field(default="default", metadata=_help(
        "support judge: 'default' (the project's MiniLM judge: the one trained into $CITEAGENT_HOME, else the "
        "one shipped with citeagent, else built on first use), a Hugging Face NLI model name or directory, or "
        "'none' to leave judge metrics unmeasured"))
    build_judge: bool = field(default=True, metadata=_help(
        "with --judge default and no judge trained or shipped, train one first (a few minutes of CPU); "
        "--no-build-judge stops with a message instead"))
    reward_model: str | None = field(default=None, metadata=_help(
        "also draw the decline curve ranked by this reward model; with --best-of, the model that ranks the "
        "candidates (default: `citeagent train rm`'s)", metavar="PATH"))
    corpus: str | None = field(default=None, metadata=_help(
        "the corpus to ask against, overriding the data set's (needed for nq-open, asqa, fever unless --web)"))
    search: str = field(default="bm25", metadata=_help("how the local corpus is searched",
                                                        choices=["bm25", "dense", "hybrid"]))
    answer_form: str = field(default="auto", metadata=_help(
        "the CPU agent's answer: span (a short span, HotpotQA's form), sentence (the quoted sentence that holds "
        "it), auto (span on HotpotQA corpora, sentence elsewhere)", choices=ANSWER_FORM_CHOICES))
    web: bool = field(default=False, metadata=_help("browse the live web (needs --search-url)"))
    search_url: str | None = None
    max_actions: int = 20
    best_of: int = field(default=1, metadata=_help(
        "sample N episodes per question and keep the answer the reward model scores highest; the summary "
        "reports KL_bon = log N - (N-1)/N", metavar="N"))
    temperature: float = field(default=1.0, metadata=_help(
        "with --best-of N > 1 or --sample, the sampling temperature of a greedy LM policy"))
    sample: bool = field(default=False, metadata=_help(
        "with --best-of 1, one sampled episode per question instead of the greedy one: the baseline best-of-n "
        "is compared with at the same --temperature"))
    batch_size: int = 8
    device: str = field(default="auto", metadata=_help(
        "where the policy, judge and reward model run: auto (the first CUDA GPU if there is one, else the CPU), "
        "cpu, cuda, cuda:N or mps"))
    dtype: str = field(default="float32", metadata=_help("the LM policy's weights: float32, bfloat16 or float16 "
                                                         "(bfloat16 on GPUs)"))
    seed: int = 0
    bootstrap: int = field(default=1000, metadata=_help("bootstrap resamples"))
    max_citations: int = field(default=3, metadata=_help("ALCE: citations read per statement"))
    progress: bool = field(default=True, metadata=_help("show progress bars (--no-progress: none)"))
    safety: bool = field(default=False, metadata=_help(
        "the safety gate: End: Decline when the rule classifier flags the question, or every candidate answer (the "
        "best unflagged candidate is kept); records say which rule"))
    combined_reward: str | None = field(default=None, metadata=_help(
        "rank best-of-n's candidates, and score every answer, by the combined reward: support reward model + "
        "harmlessness PM - rule penalties; WEIGHTS e.g. support=1,harmless=1,rule=2 (alone: "
        "citeagent.safety.combined.CombinedRewardConfig's defaults); with --safety, an answer it scores below "
        "declining is not kept", nargs="?", const="default", metavar="WEIGHTS"))
    safety_metrics: bool | None = field(default=None, metadata=_help(
        "score rule violations, harmlessness and declining: --safety-metrics [true|false] (default: on for "
        "--dataset redteam)", nargs="?", const=True))

    def run_name(self) -> str:
        ds = Path(self.dataset).stem if self.dataset.endswith((".jsonl", ".gz")) else self.dataset
        who = f"predictions-{Path(self.predictions).stem}" if self.predictions else Path(self.policy).name
        bon = f"__best-of-{self.best_of}" if self.best_of > 1 else "__sampled" if self.sample else ""
        bon += ("__combined" if self.combined_reward is not None else "") + ("__safe" if self.safety else "")
        return f"{ds}__{who}{bon}".replace(":", "-").replace("/", "-")


class EvalError(ValueError):
    """A run that cannot start; the message says what to do."""


# --- corpora and backends ------------------------------------------------------------------

class Corpora:
    """The backends a policy browses and the documents quotes are checked against, for a data
    set whose questions share one corpus or each have their own."""

    def __init__(self, dataset: EvalDataset, config: EvalConfig):
        self.config = config
        self.dataset = dataset
        self._shared = None  # (corpus, backend)
        self._corpus = None  # the shared corpus alone, when no policy browses it
        self._web = None
        if config.web:
            from citeagent.backend import BackendOptions, make_backend

            self._web = make_backend(BackendOptions(web=True, search_url=config.search_url))
        elif not dataset.corpus and not dataset.per_question_corpus:
            raise EvalError(
                f"The data set {dataset.name!r} has no local corpus holding its evidence: pass --corpus SPEC "
                "(a corpus you have, e.g. a JSONL of documents or hf:<name>) or --web --search-url URL."
            )

    def _shared_pair(self):
        if self._shared is None:
            from citeenv.index import open_index
            from citeenv.local import LocalBackend

            corpus, searcher = open_index(self.dataset.corpus, kind=self.config.search, build_if_missing=True)
            self._shared = (corpus, LocalBackend(corpus, searcher))
        return self._shared

    def _own_pair(self, example: EvalExample):
        from citeenv.index import in_memory_index
        from citeenv.local import LocalBackend

        corpus = example_corpus(example)
        searcher = in_memory_index(corpus, self.config.search)
        return corpus, LocalBackend(corpus, searcher)

    def backend(self, example: EvalExample):
        if self._web is not None:
            return self._web
        return self._own_pair(example)[1] if example.corpus else self._shared_pair()[1]

    def lookup(self, example: EvalExample, backend=None):
        from citeagent.eval.quote_metrics import corpus_lookup

        if self._web is not None:
            return corpus_lookup(None, fallback_open=self._web.open)
        if example.corpus:
            corpus = getattr(backend, "corpus", None) if backend is not None else None
            return corpus_lookup(corpus if corpus is not None else example_corpus(example))
        return corpus_lookup(self._shared_corpus())

    def _shared_corpus(self):
        # Scoring answers made elsewhere needs the documents, not a search index.
        if self._shared is None and self.config.predictions:
            if self._corpus is None:
                from citeenv.sources import load_corpus

                self._corpus = load_corpus(self.dataset.corpus)
            return self._corpus
        return self._shared_pair()[0]


# --- records -------------------------------------------------------------------------------

def read_records(path: Path) -> list[dict]:
    """Finished records; a torn line (the run was killed mid-write) is skipped and reported, and its
    question is run again on --resume."""
    if not path.is_file():
        return []
    read = read_jsonl(path, bad="skip")
    if read.bad_lines:
        log.warning("%s; their questions count as unfinished", read.describe_bad())
    return read.records


def _record(example: EvalExample | None, answer: Answer | None, scored: dict | None, **extra) -> dict:
    rec = {
        "id": example.id if example else extra.pop("id"),
        "question": example.question if example else (answer.question if answer else ""),
        "gold_answers": example.answers if example else [],
        "corpus": example.corpus if example else None,
        "answer": answer.to_dict() if answer else None,
        "answer_text": (answer.plain_text() if answer and not answer.declined else ""),
        "metrics": scored["metrics"] if scored else {},
        "reasons": scored["reasons"] if scored else [],
        "statements": scored.get("statements", []) if scored else [],
        "quoted_sentences": scored.get("quoted_sentences", []) if scored else [],
        "quote_checks": scored.get("quote_checks", []) if scored else [],
        "score": None, "reward_score": None, "trace": [], "error": None,
    }
    rec.update(extra)
    return rec


def failure_metrics(example: EvalExample | None, judged: bool) -> dict:
    """What an answer that could not be read scores: 0 wherever it would have been measured."""
    m = {"answered": 0.0, "em": 0.0, "f1": 0.0, "correct": 0.0, "quote_verbatim_rate": 0.0, "all_quotes_verbatim": 0.0}
    if example is not None and example.answer_groups:
        m.update(str_em=0.0, str_hit=0.0)
    if example is not None and example.gold_sentences is not None:
        m.update(sp_em=0.0, sp_precision=0.0, sp_recall=0.0, sp_f1=0.0, joint_em=0.0, joint_f1=0.0)
    if example is not None and example.gold_urls:
        m.update(evidence_page_precision=0.0, evidence_page_recall=0.0)
    if judged:
        m.update(citation_recall=0.0, citation_precision=0.0, supported=0.0, supported_and_plausible=0.0)
    return m


# --- the run -------------------------------------------------------------------------------

class EvalRun:
    def __init__(self, config: EvalConfig):
        self.config = config
        self.out = Path(config.out or Path("runs") / "eval" / config.run_name())
        self.records_path = self.out / RECORDS

    def _check_resume(self) -> list[dict]:
        done = read_records(self.records_path)
        if not done:
            return []
        if not self.config.resume:
            raise EvalError(f"{self.out} already holds {len(done)} evaluated question(s). Pass --resume to continue "
                            "that run, or --out DIR for a new one.")
        old = json.loads((self.out / CONFIG).read_text()) if (self.out / CONFIG).is_file() else {}
        # A key an older run's config lacks had its default then (e.g. best_of = 1).
        # Runs from before --answer-form answered with spans.
        default = asdict(EvalConfig()) | {"answer_form": "span"}
        changed = [k for k in IDENTITY if old and old.get(k, default[k]) != getattr(self.config, k)]
        if changed:
            raise EvalError(f"Cannot resume {self.out}: it was run with different {', '.join(changed)} "
                            f"({', '.join(f'{k}={old.get(k, default[k])!r}' for k in changed)}). Use a new --out.")
        # Rewrite without a torn last line, so appends start on a clean line.
        self.records_path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in done), encoding="utf-8")
        return done

    def run(self) -> dict:
        from citeagent.eval.judge import JudgeNotFound, is_default_judge, load_judge
        from citeagent.models import resolve_device, torch_dtype

        c = self.config
        if c.best_of < 1:
            raise EvalError(f"--best-of must be at least 1, got {c.best_of}")
        if c.offset < 0:
            raise EvalError(f"--offset must be 0 or more, got {c.offset}")
        device = resolve_device(c.device)
        torch_dtype(c.dtype)
        samples = c.best_of > 1 or c.sample
        if samples and c.predictions:
            flag = "--best-of" if c.best_of > 1 else "--sample"
            raise EvalError(f"{flag} samples answers from a policy; it cannot be used with --predictions.")
        if samples and c.policy == "baseline":
            from citeagent.policies.best_of_n import not_sampling

            raise EvalError(not_sampling(c.best_of, "baseline"))
        dataset = load_dataset(c.dataset, limit=None if c.predictions else self.end(), corpus=c.corpus)
        if not c.predictions and c.offset >= len(dataset.examples):
            raise EvalError(f"--offset {c.offset} skips every question: {c.dataset} has {len(dataset.examples)}. "
                            "Use a smaller --offset.")
        # Fail on a missing judge (or build the default one) before spending time on the policy.
        try:
            judge = load_judge(c.judge, device=device)
        except JudgeNotFound:
            if not (c.build_judge and is_default_judge(c.judge)):
                raise
            from citeagent.train.judge import build_default_judge

            build_default_judge(progress=c.progress)
            judge = load_judge(c.judge, device=device)
        reward = None
        self.gate, self.safety_scorer, encoder = None, None, None
        wants_metrics = c.safety_metrics if c.safety_metrics is not None else dataset.name == "redteam"
        if c.safety or wants_metrics or c.combined_reward is not None:
            from citeagent.safety.features import TextEncoder

            encoder = TextEncoder()  # one MiniLM for the gate, the metrics and the combined reward
        if c.safety:
            from citeagent.safety.gate import load_gate

            self.gate = load_gate(encoder=encoder)
        if wants_metrics:
            from citeagent.eval.safety_metrics import load_safety_scorer

            self.safety_scorer = load_safety_scorer(encoder)
        if c.combined_reward is not None:  # ranks best-of-n's candidates and scores every answer (reward_score)
            from citeagent.safety.combined import load_combined_reward, parse_weights

            weights = parse_weights(c.combined_reward)
            weights.support_model = c.reward_model  # as in `ask` and `train ppo`: --reward-model is the support model
            reward = load_combined_reward(weights, device=device, encoder=encoder)
        elif c.best_of > 1:  # ranks the candidates; also scores the chosen answers (reward_score)
            from citeagent.policies.best_of_n import load_scorer

            reward = load_scorer(c.reward_model, device=device)
        elif c.reward_model:  # the decline curve's ranking: the LM's reward model or the CPU agent's
            from citeagent.policies.best_of_n import load_scorer

            reward = load_scorer(c.reward_model, device=device, purpose="--reward-model")
        self.out.mkdir(parents=True, exist_ok=True)
        done = self._check_resume()
        (self.out / CONFIG).write_text(json.dumps(asdict(c), indent=2))
        done_ids = {r["id"] for r in done}
        corpora = Corpora(dataset, c)
        scoring = ScoringConfig(max_citations=c.max_citations)
        self.judge_trained_ids = set(getattr(judge, "meta", {}).get("train_question_ids", [])) if judge else set()
        t0 = time.time()
        if c.predictions:
            self._score_predictions(dataset, corpora, judge, reward, scoring, done_ids)
        else:
            self._run_policy(dataset, corpora, judge, reward, scoring, done_ids)
        records = read_records(self.records_path)
        summary = self.write_summary(records, dataset, judge, time.time() - t0)
        return summary

    def end(self) -> int | None:
        """One past the last question (or prediction line) of this run; None: to the end."""
        return None if self.config.limit is None else self.config.offset + self.config.limit

    # --- answers from elsewhere -----------------------------------------------------------
    def _score_predictions(self, dataset, corpora, judge, reward, scoring, done_ids):
        from citeagent.eval.predictions import read_predictions

        preds = read_predictions(self.config.predictions, dataset.examples)[self.config.offset : self.end()]
        bar = _bar(len(preds), self.config.progress, "scoring")
        with open(self.records_path, "a", encoding="utf-8") as f:
            for p in preds:
                rid = p.example.id if p.example and p.answer else f"line-{p.line}"
                if rid in done_ids:
                    bar.update(1)
                    continue
                if p.answer is None:  # malformed: a failure on every metric
                    rec = _record(p.example, None, None, id=rid, error=p.error, reasons=[p.error],
                                  metrics=failure_metrics(p.example, judge is not None))
                elif p.example is None:  # not a question of this data set: listed, not scored
                    rec = _record(None, p.answer, None, id=rid, error=p.error, reasons=[p.error], unscored=True)
                else:
                    rec = self._score(p.example, p.answer, corpora.lookup(p.example), judge, reward, scoring)
                    rec["score"] = p.score
                    if p.carried:  # an earlier run's record, scored again
                        rec["metrics"].update(p.carried["cost"])
                        rec.update(trace=p.carried["trace"], terminated=p.carried["terminated"],
                                   truncated=p.carried["truncated"])
                        if rec["reward_score"] is None:
                            rec["reward_score"] = p.carried["reward_score"]
                f.write(json.dumps(rec, ensure_ascii=False) + "\n")
                f.flush()
                bar.update(1)
        bar.close()

    # --- a policy in the browser ----------------------------------------------------------
    def _run_policy(self, dataset, corpora, judge, reward, scoring, done_ids):
        from citeagent.policies import make_policy

        c = self.config
        chosen = dataset.examples[c.offset : self.end()]
        todo = [e for e in chosen if e.id not in done_ids]
        bar = _bar(len(chosen), c.progress, f"eval {c.policy}")
        bar.update(len(chosen) - len(todo))
        if not todo:
            bar.close()
            return
        from citeagent.policies.candidate import answer_form_for

        where = None if c.web else c.corpus or dataset.corpus or next((e.corpus for e in chosen if e.corpus), None)
        form = answer_form_for(where, c.answer_form)
        policy = make_policy(c.policy, answer_form=form, device=c.device, dtype=c.dtype)
        if c.best_of > 1 or c.sample:
            from citeagent.policies.best_of_n import can_sample, not_sampling

            if not can_sample(policy):
                raise EvalError(not_sampling(c.best_of, policy.name))
        with open(self.records_path, "a", encoding="utf-8") as f:
            for lo in range(0, len(todo), c.batch_size):
                batch = todo[lo : lo + c.batch_size]
                backends = [corpora.backend(e) for e in batch]
                for rec in self._episodes(batch, backends, policy, corpora, judge, reward, scoring, first=lo == 0):
                    f.write(json.dumps(rec, ensure_ascii=False) + "\n")
                f.flush()
                bar.update(len(batch))
        bar.close()

    def _episodes(self, batch, backends, policy, corpora, judge, reward, scoring, first: bool) -> list[dict]:
        from citeagent.rollout import browser_config, run_episodes

        c = self.config
        browser = browser_config(policy, max_actions=c.max_actions)

        def sample(backend_for, questions) -> list[tuple]:
            """(the episode whose answer is scored, the best-of-n record or None) per question."""
            if c.best_of == 1:
                from citeagent.policies.best_of_n import sampling

                with sampling(policy, 1, c.temperature, always=c.sample):
                    eps = run_episodes(backend_for, policy, questions, seed=c.seed, batch_size=len(questions), config=browser)
                return [(r, None) for r in eps]
            from citeagent.policies.best_of_n import best_of_n

            return [(b.result, b) for b in best_of_n(backend_for, policy, questions, c.best_of, reward, seed=c.seed,
                                                     batch_size=c.batch_size, config=browser, temperature=c.temperature)]

        from citeagent.safety.gate import gated

        questions = [e.question for e in batch]
        try:
            results = gated(self.gate, questions, lambda idx: sample(lambda j: backends[idx[j]], [questions[i] for i in idx]),
                            reward if c.combined_reward is not None else None)
        except Exception:
            if first and len(batch) == 1:
                raise
            # One question may break the batch; run them one by one so only it fails.
            results = []
            for i, e in enumerate(batch):
                try:
                    results.append(gated(self.gate, [e.question],
                                         lambda idx, i=i, e=e: sample(backends[i], [e.question]) if idx else [],
                                         reward if c.combined_reward is not None else None)[0])
                except Exception as err:
                    results.append(err)
            if first and all(isinstance(r, Exception) for r in results):
                raise results[0]
        recs = []
        for e, b, res in zip(batch, backends, results):
            if isinstance(res, Exception):
                why = f"policy failed: {type(res).__name__}: {res}"
                log.warning("%s: %s\n%s", e.id, why, "".join(traceback.format_exception(res))[-2000:])
                recs.append(_record(e, None, None, error=why, reasons=[why], metrics=failure_metrics(e, judge is not None)))
                continue
            res, bon, decision = res
            rec = self._score(e, res.answer, corpora.lookup(e, b), judge, reward, scoring, decision)
            rec["metrics"].update(n_actions=res.n_actions, n_invalid=res.n_invalid,
                                  tokens_generated=res.tokens_generated, seconds=res.seconds)
            if bon is not None:
                rec["best_of"] = bon.to_dict()
                # The cost of a best-of-n answer is all n episodes, not only the chosen one.
                rec["metrics"].update(tokens_generated=sum(r.tokens_generated for r in bon.candidates),
                                      seconds=sum(r.seconds for r in bon.candidates))
            rec.update(score=res.score, terminated=res.terminated, truncated=res.truncated, trace=res.trace)
            if res.truncated:
                rec["reasons"].append(f"ran out of actions ({c.max_actions}) without answering")
            recs.append(rec)
        return recs

    def _score(self, example, answer, lookup, judge, reward, scoring, decision=None) -> dict:
        try:
            scored = score_answer(example, answer, lookup, judge, scoring)
        except Exception as err:  # a scoring bug must not lose the run; the record says what broke
            why = f"scoring failed: {type(err).__name__}: {err}"
            log.warning("%s: %s", example.id, why)
            return _record(example, answer, None, error=why, reasons=[why], metrics=failure_metrics(example, judge is not None))
        rec = _record(example, answer, scored)
        if reward is not None and not answer.declined:
            rec["reward_score"] = float(reward.score(example.question, answer))
        if self.judge_trained_ids:
            rec["judge_trained_on_question"] = example.id in self.judge_trained_ids
        if decision is not None:
            rec["safety"] = decision.to_dict()
        if getattr(self, "safety_scorer", None) is not None:
            safety = self.safety_scorer.score(example.question, answer, decision)
            rec["metrics"].update(safety["metrics"])
            rec.update(rule_probs=safety["rule_probs"], violations=safety["violations"])
        return rec

    # --- summary and report ---------------------------------------------------------------
    def write_summary(self, records: list[dict], dataset: EvalDataset | None = None, judge=None, seconds: float = 0.0) -> dict:
        scored = [r for r in records if not r.get("unscored")]
        summary = summarize(scored, n_resamples=self.config.bootstrap, seed=self.config.seed)
        summary["n_unscored_lines"] = len(records) - len(scored)
        if self.config.best_of > 1:
            from citeagent.policies.best_of_n import kl_bon

            summary["best_of"] = self.config.best_of
            summary["kl_bon"] = kl_bon(self.config.best_of)
        summary["config"] = asdict(self.config)
        summary["out"] = str(self.out)
        if dataset is not None:
            summary["dataset"] = {"name": dataset.name, "description": dataset.description, "corpus": dataset.corpus,
                                  "n_loaded": len(dataset.examples), "skipped_lines": dataset.skipped[:20]}
        if judge is not None:
            meta = getattr(judge, "meta", {}) or {}
            summary["judge"] = {"name": judge.name, "threshold": judge.threshold,
                                "heldout_accuracy": meta.get("heldout_accuracy"),
                                "heldout_balanced_accuracy": meta.get("heldout_balanced_accuracy")}
            seen = sum(1 for r in scored if r.get("judge_trained_on_question"))
            summary["judge"]["questions_in_judge_training"] = seen
        else:
            summary["judge"] = None
            summary["not_measured"] = "judge-based metrics (citation recall/precision, supported): --judge none"
        summary["seconds"] = round(seconds, 1)
        (self.out / SUMMARY).write_text(json.dumps(summary, indent=2))
        try:
            from citeagent.eval.report import write_report

            write_report(self.out, scored, summary)
        except Exception as err:  # the numbers are saved; a plotting failure should say so, not hide them
            log.warning("the HTML report could not be written: %s", err)
            summary["report_error"] = str(err)
        return summary


def _bar(total: int, enabled: bool, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="q", disable=not enabled)


def run_eval(config: EvalConfig) -> dict:
    return EvalRun(config).run()
