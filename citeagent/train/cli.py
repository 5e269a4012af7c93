"""`citeagent train WHAT`: one sub-command per trainer, each built from its config dataclass.

A trainer is a config dataclass (its options, defaults and checks: citeagent/config_flags.py
turns its fields into flags) and a run function that takes the config and returns the exit
code. It registers with one line in TRAINERS; the modules are named as "module:attribute" and
imported only when that trainer is run, so `citeagent --help` stays fast. A new trainer:

    # citeagent/train/rules.py
    @dataclass
    class RulesConfig:
        data: str = field(default="rules.jsonl", metadata={"help": "rule-violation labels (JSONL)"})
        epochs: float = 1.0

        def __post_init__(self): ...       # raise ValueError("--epochs must be > 0 ...") on bad values

    def run_rules(config: RulesConfig) -> int:
        ...
        return 0

    # here, in TRAINERS:
    Trainer("rules", "train the rules classifier", "citeagent.train.rules:RulesConfig",
            "citeagent.train.rules:run_rules"),

and `citeagent train rules --data x.jsonl --epochs 2` runs it.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass

from citeagent.config_flags import config_from_args, parser_class


@dataclass(frozen=True)
class Trainer:
    name: str
    help: str
    config: str  # "module:ConfigClass"
    run: str  # "module:function", called with the config instance, returns the exit code
    description: str = ""


TRAINERS = [
    Trainer("pydocs-questions", "generate pydocs training questions with gold supporting sentences",
            "citeagent.data.pydocs_questions:PydocsQuestionsConfig", "citeagent.data.pydocs_questions:run_pydocs_questions",
            "Generate questions from the pydocs corpus's own sentences, each with a short answer and the verbatim gold "
            "sentence with its offsets, drop those that leak the evaluation set (corpora/pydocs_qa.jsonl), and write "
            "them as JSONL."),
    Trainer("cpu-bc", "behaviour cloning of the CPU-scale candidate policy (the default agent)",
            "citeagent.train.cpu_bc:CpuBCConfig", "citeagent.train.cpu_bc:main",
            "Roll-ins in the browser on HotpotQA training questions (distractor and pooled) and generated pydocs "
            "questions, each state labelled with the gold-evidence expert's choice among the enumerated candidates "
            "(plus people's `citeagent browse` demonstrations with --demos); cross-entropy over the candidates."),
    Trainer("cpu-rm", "reward model on comparisons of the CPU agent's answers (its own encoder, a scalar head)",
            "citeagent.train.cpu_rm:CpuRMConfig", "citeagent.train.cpu_rm:main",
            "Bradley-Terry on webgpt_comparisons rows (the pipeline's gold-judged samples, or the labelling app's "
            "export); reports validation accuracy on questions kept back."),
    Trainer("cpu-rs", "rejection-sampling fine-tuning of the CPU policy against the reward model (expert iteration)",
            "citeagent.train.cpu_rs:CpuRSConfig", "citeagent.train.cpu_rs:main"),
    Trainer("cpu-ppo", "PPO of the CPU policy against the reward model or the gold judge",
            "citeagent.train.cpu_ppo:CpuPPOConfig", "citeagent.train.cpu_ppo:main",
            "Thousands of episodes on 2 cores: per-decision KL penalty to the BC policy, GAE, clipped objective, "
            "value head; checkpoints every iteration and resumes exactly."),
    Trainer("pipeline", "the CPU agent from scratch: questions, BC, comparisons, RM, rejection sampling, PPO",
            "citeagent.train.pipeline:PipelineConfig", "citeagent.train.pipeline:run",
            "Runs every stage in WebGPT's order with progress bars, each into its own folder under --out, skipping "
            "stages already done; --ship STAGE makes that stage's policy the shipped default."),
    Trainer("reader", "train the extractive answer reader (MiniLM + LoRA, span and answer-type heads)",
            "citeagent.train.reader:ReaderConfig", "citeagent.train.reader:run_reader",
            "Train the reader on HotpotQA training questions' gold supporting sentences and save it (the shipped one: "
            "--out citeagent/artifacts/reader --seed 0)."),
    Trainer("demos", "write scripted expert demonstrations (gold evidence) for behaviour cloning",
            "citeagent.train.expert:DemosConfig", "citeagent.train.expert:run_demos",
            "Browse the first N HotpotQA training questions (never the held-out evaluation ones) with a scripted "
            "expert that quotes the gold supporting sentences, and append the episodes to a demonstration file in "
            "`citeagent browse`'s format."),
    Trainer("bc", "behaviour cloning of the browsing policy on demonstrations",
            "citeagent.train.bc:BCConfig", "citeagent.train.bc:run_bc",
            "Fine-tune the policy LM on demonstrations (observation -> command, loss on the command only), with "
            "LoRA or all weights, and save a model directory `--policy DIR` can use."),
    Trainer("judge", "train the offline support judge and report its held-out accuracy",
            "citeagent.train.judge:JudgeTrainConfig", "citeagent.train.judge:run_judge",
            "Train the MiniLM support judge on HotpotQA's gold supporting sentences (first 30% of the shared split "
            "held out) and save it where `citeagent eval` finds it."),
    Trainer("rm", "train a Bradley-Terry reward model on comparisons (TRL RewardTrainer)",
            "citeagent.train.rm_config:RMConfig", "citeagent.train.rm:run_rm",
            "Train a reward model on comparisons of cited answers, save it, and report pairwise accuracy (95% "
            "bootstrap CI), calibration and score distribution on held-out questions of every source."),
    Trainer("ppo", "PPO of the browsing policy against the reward model (WebGPT's RL stage)",
            "citeagent.train.ppo_config:PPOConfig", "citeagent.train.ppo:run_ppo",
            "Episode-level PPO: rollouts in the batched browser, the reward model's score at the end of each "
            "episode, a per-token KL penalty against the behaviour-cloned policy, GAE and a clipped objective. "
            "Writes log.jsonl/log.png, checkpoints (--resume) and a final model dir."),
    Trainer("harmless-pm", "train the harmlessness preference model on HH-RLHF harmless-base",
            "citeagent.train.harmless_pm:HarmlessPMConfig", "citeagent.train.harmless_pm:run_harmless_pm",
            "Fine-tune MiniLM's top layers with a Bradley-Terry head on HH-RLHF harmless-base pairs (or, with "
            "--finetune-layers 0, fit heads on the frozen encoder), choose on a validation split of the training "
            "dialogues, and report accuracy on held-out dialogues with a bootstrap 95% interval. The defaults "
            "rebuild the shipped model."),
    Trainer("rules", "train the rule-violation classifier (one multi-label head) and report its held-out accuracy",
            "citeagent.train.rules_clf:RulesConfig", "citeagent.train.rules_clf:run_rules",
            "Train the rule-violation classifier on the hand-built seed set, HotpotQA negatives and the labelling "
            "app's per-rule labels (--labels), and report held-out accuracy."),
]


def load(ref: str):
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


def add_train_parser(subparsers, wanted: str | None = None):
    """`citeagent train`; only the trainer named `wanted` (or every one, for None) gets its flags,
    the others a help line, since building one imports its config module."""
    train = subparsers.add_parser("train", help="train reward models, judges and policies")
    sub = train.add_subparsers(dest="train_command", metavar="WHAT", parser_class=parser_class)
    for t in TRAINERS:
        if wanted is not None and t.name != wanted:
            sub.add_parser(t.name, help=t.help)
            continue
        config = load(t.config)
        p = sub.add_parser(t.name, dataclass_types=[config], help=t.help, description=t.description or t.help)
        p.set_defaults(func=lambda args, t=t, config=config: load(t.run)(config_from_args(args, config)))
    return train
