"""Train a Bradley-Terry reward model on comparisons with TRL's RewardTrainer.

One config dataclass, one trainer. The trainer is TRL's, with two changes:
- soft labels: the loss is the cross-entropy against P(chosen better), so a tie (0.5) pulls the two
  scores together instead of being dropped or counted as a win, as WebGPT trained its reward model;
- batches group pairs of similar length, which on a CPU removes most of the padding work.
Pairs are tokenised here (BERT tokenizers have no eos token for TRL to append), cut to fit instead
of dropped when too long.
"""
from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from trl import RewardConfig, RewardTrainer
from trl.trainer.reward_trainer import DataCollatorForPreference

from citeagent.train.common import device_trainer_args
from citeagent.train.rm_config import RMConfig
from citeagent.reward.model import RewardModel, build_backbone
from citeagent.reward.report import evaluate_sources, markdown_table, write_report
from citeagent.reward.schema import Comparison
from citeagent.reward.sources import load_sources, split_heldout, subsample


@dataclass
class SoftPreferenceCollator(DataCollatorForPreference):
    """TRL's collator, carrying each pair's P(chosen better) along."""

    def torch_call(self, examples):
        out = super().torch_call(examples)
        if "label_prob" in examples[0]:
            out["label_prob"] = torch.tensor([e["label_prob"] for e in examples], dtype=torch.float)
        return out


def is_head(name: str, model) -> bool:
    """The scalar head (and BERT's pooler, which only the head reads), as opposed to the backbone."""
    return not name.startswith(model.base_model_prefix + ".") or ".pooler." in name


class CiteRewardTrainer(RewardTrainer):
    def __init__(self, *args, processing_class=None, data_collator=None, head_lr: float | None = None, **kwargs):
        if data_collator is None and processing_class is not None:
            data_collator = SoftPreferenceCollator(pad_token_id=processing_class.pad_token_id)
        self.head_lr = head_lr
        super().__init__(*args, processing_class=processing_class, data_collator=data_collator, **kwargs)

    def create_optimizer(self, model=None):
        # The head starts from random weights and the backbone from pretrained ones: on a budget of a
        # few hundred steps the head needs a larger step than the backbone can take without damage.
        fresh = self.optimizer is None
        opt = super().create_optimizer(model)
        if fresh and self.head_lr:
            model = self.model if model is None else model
            head = {id(p) for n, p in model.named_parameters() if is_head(n, model)}
            moved = []
            for group in opt.param_groups:
                params = group["params"]
                group["params"] = [p for p in params if id(p) not in head]
                if len(group["params"]) < len(params):
                    moved.append({**{k: v for k, v in group.items() if k != "params"}, "lr": self.head_lr,
                                  "params": [p for p in params if id(p) in head]})
            for group in moved:
                opt.add_param_group(group)
        return opt

    def _set_signature_columns_if_needed(self):
        if self._signature_columns is None:
            # "length" must survive column pruning: the length-grouped sampler reads it.
            self._signature_columns = ["chosen_ids", "rejected_ids", "margin", "label_prob", "length"]

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        prob = inputs.pop("label_prob", None)
        if prob is None:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        mode = "train" if self.model.training else "eval"
        inputs["use_cache"] = False
        outputs = model(**inputs)
        chosen, rejected = torch.chunk(outputs.logits.squeeze(-1), chunks=2)
        d = chosen - rejected
        # cross-entropy with a soft target: p = 1 is TRL's -logsigmoid(d); p = 0.5 is minimised at d = 0
        loss = -(prob * F.logsigmoid(d) + (1 - prob) * F.logsigmoid(-d)).mean()
        if self.args.center_rewards_coefficient is not None:
            loss = loss + self.args.center_rewards_coefficient * torch.mean((chosen + rejected) ** 2)
        with torch.no_grad():
            decided = prob != 0.5
            if decided.any():
                self._metrics[mode]["accuracy"].append((d[decided] > 0).float().mean().item())
            self._metrics[mode]["margin"].append(d.mean().item())
            self._metrics[mode]["mean_reward"].append(outputs.logits.mean().item())
        return (loss, outputs) if return_outputs else loss


def pair_rows(encode, comps: list[Comparison], label_mode: str) -> list[dict]:
    """Tokenised (chosen, rejected, P(chosen better)) rows; the preferred answer goes first.
    `encode(question, answer)` gives token ids, e.g. RewardModel.encode."""
    rows = []
    for c in comps:
        p = c.label(label_mode)
        a, b = (c.answer_0, c.answer_1) if p >= 0.5 else (c.answer_1, c.answer_0)
        ca, cb = encode(c.question, a), encode(c.question, b)
        rows.append({"chosen_ids": ca, "rejected_ids": cb, "label_prob": max(p, 1 - p), "length": max(len(ca), len(cb))})
    return rows


def reward_config(cfg: RMConfig, output_dir: str, **overrides) -> RewardConfig:
    kw = dict(
        output_dir=output_dir, per_device_train_batch_size=cfg.batch_size, learning_rate=cfg.lr,
        num_train_epochs=cfg.epochs, max_steps=cfg.max_steps, weight_decay=cfg.weight_decay, warmup_steps=cfg.warmup,
        lr_scheduler_type="linear", seed=cfg.seed, data_seed=cfg.seed, logging_steps=cfg.logging_steps,
        save_strategy="no", report_to="none", max_length=None, center_rewards_coefficient=cfg.center_rewards,
        train_sampling_strategy="group_by_length" if cfg.group_by_length else "random",
        length_column_name="length", dataloader_num_workers=0, disable_tqdm=True,
        **device_trainer_args(),
    )
    kw.update(overrides)
    return RewardConfig(**kw)


def fit(rm: RewardModel, train: list[Comparison], cfg: RMConfig, log=None) -> dict:
    """Train `rm` in place on `train`; return what the run measured."""
    from datasets import Dataset

    if not train:
        raise ValueError("No training comparisons: every source is empty after the held-out split.")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    rows = pair_rows(rm.encode, train, cfg.label_mode)
    work = tempfile.mkdtemp(prefix="citeagent-rm-")
    try:
        trainer = CiteRewardTrainer(model=rm.model, args=reward_config(cfg, work), train_dataset=Dataset.from_list(rows),
                                    processing_class=rm.tokenizer, head_lr=cfg.head_lr)
        t0 = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - t0
        history = [h for h in trainer.state.log_history if "loss" in h]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    # unwrap: accelerate leaves a mixed-precision autocast wrapper on forward() after training
    rm.model = trainer.accelerator.unwrap_model(trainer.model, keep_fp32_wrapper=False).to(rm.device)
    rm.model.eval()
    steps = trainer.state.global_step
    pairs_seen = steps * cfg.batch_size
    if log:
        log(f"trained {steps} steps on {len(rows)} pairs in {seconds:.0f} s ({pairs_seen / max(seconds, 1e-9):.2f} pairs/s)")
    return {"train_pairs": len(rows), "train_steps": steps, "train_seconds": seconds,
            "pairs_per_second": pairs_seen / max(seconds, 1e-9), "log_history": history}


def check_no_heldout_questions(train: list[Comparison]) -> None:
    """Stop before training on pairs about HotpotQA's held-out evaluation questions."""
    from citeagent.eval.datasets import HOTPOTQA_HELDOUT_FRACTION
    from citeagent.reward.gold_judge import heldout_question_rows

    leaks = heldout_question_rows(train)
    if leaks:
        sources = ", ".join(sorted({c.source for c in leaks}))
        raise ValueError(
            f"{len(leaks)} of the training comparisons ({sources}) are about HotpotQA's held-out evaluation "
            f"questions (the first {HOTPOTQA_HELDOUT_FRACTION:.0%} of the dev file, which `citeagent eval --dataset hotpotqa` scores), e.g. "
            f"{leaks[0].question[:80]!r}. A reward model trained on them would rank those questions' answers "
            "from memory and inflate best-of-n's evaluation. Remove those rows, or sample answers on training "
            "questions (scripts/overoptimization.py samples only those).")


def train_reward_model(cfg: RMConfig, log=lambda m: print(m, file=sys.stderr), sources: dict | None = None
                       ) -> tuple[RewardModel, dict]:
    """Load the sources (unless given, as `load_sources` returns them), split each by question,
    train, save the model and its held-out report."""
    out = cfg.out_dir()
    sources = sources if sources is not None else load_sources(cfg.data, cfg.exclude_questions)
    train, heldout, data_stats = [], {}, {}
    for name, (comps, stats) in sources.items():
        tr, he = split_heldout(comps, cfg.heldout_frac, seed=cfg.seed)
        tr, he = subsample(tr, cfg.max_train_pairs, cfg.seed), subsample(he, cfg.max_heldout_pairs, cfg.seed)
        train += tr
        heldout[name] = he
        data_stats[name] = {**asdict(stats), "train": len(tr), "heldout": len(he)}
        dropped = ", ".join(f"{v} {k}" for k, v in stats.dropped.items())
        log(f"{name}: {stats.kept} comparisons ({len(tr)} train, {len(he)} held out)" + (f"; dropped {dropped}" if dropped else ""))
    check_no_heldout_questions(train)
    model, tokenizer = build_backbone(cfg.backbone, seed=cfg.seed)
    rm = RewardModel(model, tokenizer, max_length=cfg.max_length, max_question_tokens=cfg.max_question_tokens)
    run = fit(rm, train, cfg, log)
    report = {"backbone": cfg.backbone, "data": cfg.data, "config": asdict(cfg), "sources": data_stats,
              **{k: v for k, v in run.items() if k != "log_history"}}
    rm.save(out, {"backbone": cfg.backbone, "data": cfg.data, "label_mode": cfg.label_mode,
                  "train_pairs": run["train_pairs"]})
    report["heldout"] = evaluate_sources(rm, heldout, cfg.label_mode, cfg.n_boot, cfg.seed)
    (out / "train_log.json").write_text(json.dumps(run["log_history"], indent=2))
    write_report(report, out)
    log(f"saved the reward model to {out}\n" + markdown_table(report["heldout"]))
    return rm, report


def run_rm(cfg: RMConfig) -> int:
    """`citeagent train rm`: train (or, with --eval-only, re-measure) and print the report's path."""
    if cfg.eval_only:
        return _eval_only(cfg)
    sources = load_sources(cfg.data, cfg.exclude_questions)  # bad data stops here, before any model loads
    train_reward_model(cfg, sources=sources)
    print(cfg.out_dir() / "report.md")
    return 0


def _eval_only(cfg: RMConfig) -> int:
    """Re-measure a saved model on the held-out pairs of --data; its report's held-out part is replaced."""
    from citeagent.reward.model import load_reward_model

    out = cfg.out_dir()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    rm = load_reward_model(out)
    heldout = {}
    for name, (comps, _stats) in load_sources(cfg.data, cfg.exclude_questions).items():
        _train, he = split_heldout(comps, cfg.heldout_frac, seed=cfg.seed)
        heldout[name] = subsample(he, cfg.max_heldout_pairs, cfg.seed)
    results = evaluate_sources(rm, heldout, cfg.label_mode, cfg.n_boot, cfg.seed)
    report = json.loads((out / "report.json").read_text()) if (out / "report.json").is_file() else {}
    report.update(heldout=results, evaluated_on=cfg.data)
    write_report(report, out)
    print(markdown_table(results))
    return 0
