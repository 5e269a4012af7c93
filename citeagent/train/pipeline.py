"""`citeagent train pipeline` (`make train`): the CPU agent from scratch, in WebGPT's order.

    pydocs questions -> demonstrations + behaviour cloning -> comparisons of the BC policy's own
    answers (the gold judge labels them) -> reward model -> rejection sampling -> PPO

Each stage writes into its own folder under --out and is skipped when its output is already
there, so a killed pipeline resumes at the stage it was in (PPO itself resumes mid-run).
When more than one stage is to run, each runs in a child process of its own: the peak memory of
the pipeline is then its largest stage's, not the sum of what each stage leaves behind (embedding
caches, loaded encoders, torch's allocator).
--ship copies the chosen policy into citeagent/artifacts/cpu_policy, the agent `citeagent ask`
uses by default.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

STAGES = ("questions", "bc", "comparisons", "rm", "rs", "ppo")


@dataclass
class PipelineConfig:
    out: str = "runs/cpu_pipeline"
    seed: int = 0
    stages: str = ",".join(STAGES)  # the stages to run, in this order
    samples: int = 4  # episodes per training question for the comparisons
    comparison_questions: int = 0  # training questions sampled for comparisons (0: all)
    # where comparisons, rejection sampling and PPO draw training questions (pydocs: the generated
    # questions BC learnt from, so RL does not trade the documentation away for HotpotQA)
    settings: str = "distractor,pydocs"
    # The defaults below are the shipped agent's recipe (docs/RESULTS.md, seventh session): an RM that
    # also reads the shipped reader's view of the answer, and a KL coefficient that holds PPO near 1
    # nat an episode, where the RM is not yet over-optimised.
    ppo_episodes: int = 8192
    ppo_kl_coef: float = 0.4  # PPO's KL coefficient to the BC policy (cpu-ppo --kl-coef)
    # PPO's settings when they differ from --settings: e.g. adding redteam, the red-team prompts
    # scored by the harmlessness PM and the rule classifier (cpu-ppo --settings); "": --settings
    ppo_settings: str = ""
    # PPO's seed when it differs from --seed (-1: --seed): a PPO seed of its own on the same BC and RM
    ppo_seed: int = -1
    # HotpotQA training questions BC learns from (0: all of them, which RL then samples again). With
    # N, BC learns from the first N and its first pydocs_limit generated pydocs questions, and
    # comparisons, RS and PPO draw only questions after those: RL on questions BC never saw, as
    # when demonstrations are scarce and comparisons cheap
    demo_questions: int = 0
    # the extractive reader BC's answer head reads: "shipped", or a directory from `citeagent train
    # reader` (with --demo-questions, one trained on the same first N questions: `--limit N`)
    reader: str = "shipped"
    # the reward model's extractive reader inputs (cpu-rm --reader): "" none, "shipped", or a directory
    rm_reader: str = "shipped"
    # the reader RL's policies read (comparisons, RS, PPO; the RL policies keep it): "" BC's, or e.g.
    # a cross-fitted reader (`citeagent train reader --folds K`) that has not learnt RL's questions
    rl_reader: str = ""
    ship: str = ""  # "", or the stage whose policy becomes the shipped default: bc, rs or ppo

    def __post_init__(self):
        unknown = [s for s in self.stage_list if s not in STAGES]
        if unknown:
            raise ValueError(f"--stages: unknown stage(s) {', '.join(unknown)}; the stages are {', '.join(STAGES)}")
        if self.ship not in ("", "bc", "rs", "ppo"):
            raise ValueError(f"--ship {self.ship!r}: name the stage whose policy to ship (bc, rs or ppo)")
        from citeagent.train.cpu_bc import rl_settings

        rl_settings(self.settings)  # an unknown setting stops here, before any stage
        if self.ppo_settings:
            try:
                rl_settings(self.ppo_settings, redteam=True)
            except ValueError as e:
                raise ValueError(str(e).replace("--settings", "--ppo-settings")) from None
        from citeagent.train.cpu_rm import check_reader

        check_reader(self.rm_reader, "--rm-reader")
        check_reader(self.reader, "--reader")
        check_reader(self.rl_reader, "--rl-reader")
        if self.ppo_kl_coef < 0:
            raise ValueError(f"--ppo-kl-coef {self.ppo_kl_coef}: the KL coefficient cannot be negative; use 0 or more")
        if self.ppo_seed < -1:
            raise ValueError(f"--ppo-seed {self.ppo_seed}: give a seed of 0 or more, or -1 for --seed's")
        if self.demo_questions < 0:
            raise ValueError(f"--demo-questions {self.demo_questions}: give 0 (all) or a positive number")
        if self.demo_questions:
            from citeagent.train.cpu_bc import hotpot_training_questions

            n = len(hotpot_training_questions())
            if self.demo_questions >= n:
                raise ValueError(f"--demo-questions {self.demo_questions}: there are {n} HotpotQA training questions, "
                                 "so none would be left for RL; give fewer")
        if self.demo_questions and self.ppo_seed not in (-1, self.seed):
            # the generated pydocs questions are drawn in an order seeded like the run: another seed
            # would reorder them, and PPO could draw questions BC learnt from
            raise ValueError(f"--demo-questions with --ppo-seed {self.ppo_seed}: PPO must keep --seed's order of "
                             "questions to stay clear of BC's; change --seed instead")
        if self.samples < 2:
            raise ValueError(f"--samples {self.samples}: comparisons need at least 2 episodes per question")

    @property
    def stage_list(self) -> list[str]:
        return [s.strip() for s in self.stages.split(",") if s.strip()]


def sample_comparisons(policy_dir: Path, out: Path, n: int, limit: int, seed: int, settings: str = "distractor",
                       pydocs_questions: str = "", hotpot_from: int = 0, pydocs_from: int = 0, reader: str = "") -> dict:
    """n sampled episodes of the BC policy per training question of each setting (distractor,
    pooled, pydocs); every pair the gold judge does not tie is written as a webgpt_comparisons row."""
    from tqdm import tqdm

    from citeagent.policies.candidate import CandidatePolicy
    from citeagent.train.cpu_bc import question_pools, setting_answer_form
    from citeagent.train.cpu_rm import comparisons_from_episodes, write_comparisons
    from citeagent.train.cpu_rollout import collect_episodes

    policy = CandidatePolicy.load(policy_dir, temperature=1.0, seed=seed, reader=reader)
    comps, counts = [], {}
    for setting, (questions, backend_for) in question_pools(settings, pydocs_questions=pydocs_questions, seed=seed,
                                                            hotpot_from=hotpot_from, pydocs_from=pydocs_from).items():
        questions = questions[: limit or None]
        rows = [i for i in range(len(questions)) for _ in range(n)]
        with tqdm(total=len(rows), desc=f"comparisons: sampling {setting}", file=sys.stderr) as bar:
            episodes = collect_episodes(policy, [questions[i] for i in rows], lambda k: backend_for(rows[k]),
                                        batch_size=64, seed=seed, progress=bar, keep_decisions=False,
                                        answer_form=setting_answer_form(setting))
        got = comparisons_from_episodes(episodes, n)
        comps += got
        counts[setting] = {"questions": len(questions), "episodes": len(episodes), "comparisons": len(got)}
    write_comparisons(comps, out)
    return {"settings": counts, "comparisons": len(comps)}


def stage_command(cfg: PipelineConfig, name: str) -> list[str]:
    """The `citeagent train pipeline` command line that runs stage `name` alone with cfg's options."""
    flags = []
    for f in fields(cfg):
        if f.name not in ("stages", "ship"):
            flags += [f"--{f.name.replace('_', '-')}", str(getattr(cfg, f.name))]
    return [sys.executable, "-c", "import sys; from citeagent.cli import main; sys.exit(main())",
            "train", "pipeline", *flags, "--stages", name]


def run_in_children(cfg: PipelineConfig, done: dict, todo: list[str]) -> int:
    for name in cfg.stage_list:
        if name in done:
            print(f"[{name}] done before ({done[name]['seconds']} s); skipped", file=sys.stderr)
    for name in todo:
        # the child's stdout goes to stderr: this process's stdout is the one summary at the end
        code = subprocess.run(stage_command(cfg, name), stdout=2).returncode  # fd 2: this stderr
        if code:
            print(f"[{name}] stopped (exit code {code}); the stages before it are kept in {cfg.out}: fix what "
                  "the lines above say and run the same command again to resume there.", file=sys.stderr)
            return code
    return finish(cfg, json.loads((Path(cfg.out) / "stages.json").read_text()))


def finish(cfg: PipelineConfig, done: dict) -> int:
    """Ship the chosen stage's policy if asked, and print the run's one summary."""
    if cfg.ship:
        root = Path(cfg.out)
        ship(root / cfg.ship if cfg.ship == "bc" else root / cfg.ship / "policy")
    print(json.dumps({"config": asdict(cfg), "stages": done}, indent=2))
    return 0


def run(cfg: PipelineConfig) -> int:
    root = Path(cfg.out)
    root.mkdir(parents=True, exist_ok=True)
    done_file = root / "stages.json"
    done = json.loads(done_file.read_text()) if done_file.is_file() else {}
    todo = [s for s in cfg.stage_list if s not in done]
    if len(todo) > 1:
        return run_in_children(cfg, done, todo)

    from citeagent.train import cpu_bc, cpu_ppo, cpu_rm, cpu_rs

    questions = root / "pydocs_questions.jsonl"

    def stage(name: str, fn) -> None:
        if name not in cfg.stage_list:
            return
        if name in done:
            print(f"[{name}] done before ({done[name]['seconds']} s); skipped", file=sys.stderr)
            return
        print(f"[{name}] ...", file=sys.stderr)
        t0 = time.time()
        result = fn() or {}
        done[name] = {"seconds": round(time.time() - t0, 1), **result}
        done_file.write_text(json.dumps(done, indent=2) + "\n", encoding="utf-8")
        print(f"[{name}] {done[name]['seconds']} s", file=sys.stderr)

    def make_questions():
        from citeagent.data.pydocs_questions import PydocsQuestionsConfig, run_pydocs_questions

        run_pydocs_questions(PydocsQuestionsConfig(out=str(questions), seed=cfg.seed))
        return {}

    stage("questions", make_questions)
    bc_config = cpu_bc.CpuBCConfig(out=str(root / "bc"), seed=cfg.seed, hotpot_limit=cfg.demo_questions,
                                   reader=cfg.reader, pydocs_questions=str(questions) if questions.is_file() else "")
    stage("bc", lambda: {k: v for k, v in cpu_bc.run(bc_config).items() if k in ("train_states", "best_valid_accuracy")})
    # where RL's questions start: after BC's when BC learnt from fewer (--demo-questions)
    start = {"hotpot_from": cfg.demo_questions, "pydocs_from": bc_config.pydocs_limit if cfg.demo_questions else 0}
    pydocs = str(questions) if questions.is_file() else ""

    def usable(names: str) -> str:  # pydocs needs the generated questions
        return names if pydocs else ",".join(x for x in names.split(",") if x.strip() != "pydocs")

    settings = usable(cfg.settings)
    stage("comparisons", lambda: sample_comparisons(root / "bc", root / "comparisons.jsonl", cfg.samples,
                                                    cfg.comparison_questions, cfg.seed, settings, pydocs, **start,
                                                    reader=cfg.rl_reader))
    stage("rm", lambda: {k: v for k, v in cpu_rm.train_rm(cpu_rm.CpuRMConfig(
        comparisons=str(root / "comparisons.jsonl"), out=str(root / "rm"), seed=cfg.seed, reader=cfg.rm_reader))[1].items()
        if k in ("train_pairs", "valid_pairs", "valid_accuracy")})
    stage("rs", lambda: {"history": cpu_rs.run(cpu_rs.CpuRSConfig(
        init=str(root / "bc"), reward_model=str(root / "rm"), out=str(root / "rs"), seed=cfg.seed, settings=settings,
        pydocs_questions=pydocs, reader=cfg.rl_reader, **start))["history"]})
    ppo_settings = usable(cfg.ppo_settings) if cfg.ppo_settings else settings
    stage("ppo", lambda: {"log": cpu_ppo.run(cpu_ppo.CpuPPOConfig(
        init=str(root / "bc"), reward_model=str(root / "rm"), out=str(root / "ppo"), episodes=cfg.ppo_episodes,
        kl_coef=cfg.ppo_kl_coef, seed=cfg.seed if cfg.ppo_seed < 0 else cfg.ppo_seed, settings=ppo_settings,
        pydocs_questions=pydocs, reader=cfg.rl_reader, **start))["log"]})
    return finish(cfg, done)


def ship(policy_dir: Path) -> None:
    """Copy a trained policy into the package: the agent `citeagent ask` and `eval` use by default."""
    from citeagent.policies.candidate import SHIPPED

    for name in ("policy.json", "scorer.safetensors"):
        if not (policy_dir / name).is_file():
            raise ValueError(f"--ship: {policy_dir / name} is missing; run the stage that makes it first.")
    SHIPPED.mkdir(parents=True, exist_ok=True)
    for name in ("policy.json", "scorer.safetensors"):
        shutil.copyfile(policy_dir / name, SHIPPED / name)
    print(f"shipped {policy_dir} -> {SHIPPED}", file=sys.stderr)
