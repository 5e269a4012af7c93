#!/usr/bin/env bash
# WebGPT's pipeline on the 2-core CPU configuration, end to end: expert demonstrations ->
# behaviour cloning -> best-of-n and PPO against the reward model -> evaluation on held-out
# HotpotQA questions -> the over-optimisation chart. These are the commands behind the README's
# training table; each step's output is what the next one reads.
#
#   bash scripts/train_cpu.sh            # everything (several hours on 2 cores)
#   STEP=ppo bash scripts/train_cpu.sh   # one step: demos | bc | ppo | eval | chart
#
# Needs the default reward model (`citeagent train rm`, see README) and the support judge
# (`scripts/train_judge.py`) in $CITEAGENT_HOME.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1
CA=${CA:-.venv/bin/citeagent}
PY=${PY:-.venv/bin/python}
N_EVAL=${N_EVAL:-40}          # held-out HotpotQA questions scored (the first N of the 266)
STEP=${STEP:-all}

step() { [[ $STEP == all || $STEP == "$1" ]]; }

if step demos; then
  # 100 training questions (never the 266 held-out ones), 20% noisy steps with recoveries.
  $CA train demos --dataset hotpotqa --questions 150 --noise 0.2 --out runs/demos/hotpotqa_150.jsonl
  head -100 runs/demos/hotpotqa_150.jsonl > runs/demos/hotpotqa_100.jsonl
fi

if step bc; then
  # SmolLM2-135M, LoRA on the top 8 of 30 layers, one epoch over ~1,000 steps (~18 min).
  $CA train bc --demos runs/demos/hotpotqa_100.jsonl --epochs 1 --batch-size 8 --lr 4e-4 \
      --lora-layers 8 --threads 2 --heldout 0.05 --out runs/bc
fi

if step ppo; then
  # PPO from the BC policy against the default reward model, KL 0.02 to the BC policy.
  $CA train ppo --policy runs/bc --out runs/ppo --iterations "${PPO_ITERS:-8}" --episodes-per-iter 8 \
      --rollout-batch-size 8 --max-actions 20 --ppo-epochs 1 --minibatch-size 8 --lora-layers 8 \
      --lr 1e-4 --threads "${PPO_THREADS:-2}"
fi

if step eval; then
  ev() { $CA eval --dataset hotpotqa --limit "$N_EVAL" --reward-model default --no-progress "$@"; }
  ev --policy lm --out runs/eval/hotpotqa__lm
  ev --policy runs/bc --out runs/eval/hotpotqa__bc
  ev --policy runs/bc --best-of 4 --out runs/eval/hotpotqa__bc_best4
  ev --policy runs/ppo/final --out runs/eval/hotpotqa__ppo
  for b in bc bc_best4 ppo; do
    $CA eval --compare runs/eval/hotpotqa__bc runs/eval/hotpotqa__$b > "runs/eval/compare_bc_vs_$b.txt" || true
  done
  $CA eval --compare runs/eval/hotpotqa__lm runs/eval/hotpotqa__bc > runs/eval/compare_lm_vs_bc.txt
fi

if step chart; then
  $PY scripts/overoptimization.py --policy runs/bc --n-max "${BON_NMAX:-4}" --questions "${BON_Q:-24}" \
      --ppo-log runs/ppo/log.jsonl --out docs/overoptimization.png --json runs/bon_sweep.json
fi
