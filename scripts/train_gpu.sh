#!/usr/bin/env bash
# The run the README's 2-core CPU table could not afford, sized for one GPU: BC on every expert-
# demonstrable training question with full fine-tuning, a reward model on the BC policy's own
# samples, best-of-16, and PPO with 64 episodes an iteration, all evaluated on HotpotQA questions
# that nothing in this project has trained or chosen on.
#
#   bash scripts/train_gpu.sh                     # everything (never run at this size: no GPU was lent)
#   STEP=eval bash scripts/train_gpu.sh           # one step: check | demos | bc | rm | ppo | eval
#   SMOKE=1 bash scripts/train_gpu.sh             # every step at toy size (minutes), before GPU hours
#
# The plan, fixed in this file before any of it ran:
# - Test questions: the first $N_TEST questions of $TEST (default: the full HotpotQA dev set by hub
#   name; a local copy of the official hotpot_dev_distractor_v1.json works offline) that are not
#   in the shared split, each over its own 10 paragraphs (`--dataset hotpotqa-distractor:$TEST`).
#   Training browses the pooled shared corpus, so this is also a shift in setting, the same for
#   every policy compared.
# - Test size: 2000 questions (raised from 1000 before anything ran). The two clean CPU tests,
#   pooled, measured best-of-4 - BC at +0.0185 answer F1 and +0.0175 supporting-fact F1, with
#   per-question differences of sd 0.20 and 0.21 (`STEP=power bash scripts/train_cpu.sh`). At
#   p < 0.025 a test needs 1,100 and 1,398 questions to find those with 80% power; 1000 had 0.76
#   and 0.64, and 2000 has 0.97 and 0.93. The GPU run's differences may be larger (best-of-16, a
#   better BC policy), and per-question paragraphs may change the sd: this sizes for the smallest
#   effect the CPU runs measured.
# - Comparisons, paired over questions (`citeagent eval --compare`): best-of-$BEST_OF at T=0.3 by
#   $OUT/rm minus greedy BC, and greedy PPO minus greedy BC. Primary metrics: answer F1 and
#   supporting-fact F1. A claim is shown where B-A > 0 with p < 0.025 (two metrics per claim).
# - Every other number is secondary and reported as such.
#
# The sizes are variables; the defaults are the GPU run's. SMOKE=1 sets toy sizes (any size set in
# the environment still wins) so that every step runs end to end in minutes: it checks the set-up,
# the paths and the flags, and measures nothing. Its test set is 3 shared records with new ids and
# questions (the real test set leaves every shared question out), and its support judge and proxy
# reward model are trained for 2 steps in their own $CITEAGENT_HOME, so yours are never replaced.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ ${SMOKE:-0} == 1 ]]; then
  : "${OUT:=runs/gpu_smoke}" "${N_TEST:=3}" "${DEMO_QUESTIONS:=6}" "${BC_EPOCHS:=1}" "${RM_QUESTIONS:=2}"
  : "${RM_PAIRS:=40}" "${BEST_OF:=2}" "${PPO_ITERS:=1}" "${EPISODES:=2}" "${ROLLOUT_BATCH:=2}"
  : "${BC_EXTRA:=--max-steps 2 --threads 2}" "${RM_EXTRA:=--max-heldout-pairs 40 --threads 2}"
  : "${PPO_EXTRA:=--threads 2}" "${TEST:=$OUT/smoke_dev.json}"
  : "${JUDGE_ARGS:=--max-steps 2 --limit 40 --threads 2}"
  : "${PROXY_RM_ARGS:=--max-train-pairs 40 --max-heldout-pairs 20 --max-steps 2 --threads 2}"
  export CITEAGENT_HOME="$OUT/home"
fi
CA=${CA:-.venv/bin/citeagent}
PY=${PY:-.venv/bin/python}
STEP=${STEP:-all}
OUT=${OUT:-runs/gpu}
DEVICE=${DEVICE:-auto}
TEST=${TEST:-hotpotqa/hotpot_qa}
N_TEST=${N_TEST:-2000}
DEMO_QUESTIONS=${DEMO_QUESTIONS:-620}     # every training question (the expert skips none)
BC_EPOCHS=${BC_EPOCHS:-3}
BC_EXTRA=${BC_EXTRA:-}
RM_QUESTIONS=${RM_QUESTIONS:-400}         # training questions the BC policy samples 4 answers to
RM_PAIRS=${RM_PAIRS:-5000}
RM_EXTRA=${RM_EXTRA:-}
BEST_OF=${BEST_OF:-16}
PPO_ITERS=${PPO_ITERS:-100}
EPISODES=${EPISODES:-64}
ROLLOUT_BATCH=${ROLLOUT_BATCH:-32}
PPO_EXTRA=${PPO_EXTRA:-}                   # e.g. --resume after a killed run
JUDGE_ARGS=${JUDGE_ARGS:---epochs 1 --lr 5e-5}  # the support judge, if $CITEAGENT_HOME has none
PROXY_RM_ARGS=${PROXY_RM_ARGS:-}           # the default reward model (the rm step's proxy), likewise

step() { [[ $STEP == all || $STEP == "$1" ]]; }
mkdir -p "$OUT"

if step check; then
  if [[ ${SMOKE:-0} == 1 && $TEST == "$OUT/smoke_dev.json" ]]; then
    $PY - "$TEST" "$N_TEST" <<'PY'
import json, sys
from citeenv.sources.hotpotqa import read_hotpotqa_records
records = [dict(r, _id=f"smoke-{r['_id']}", question=f"(smoke test) {r['question']}")
           for r in read_hotpotqa_records(limit=int(sys.argv[2]))]
json.dump(records, open(sys.argv[1], "w"))
PY
  fi
  # Hours of training must not end on a test set that cannot load (no hub, a wrong path).
  $PY - "$TEST" "$N_TEST" <<'PY'
import sys
from citeagent.eval.datasets import load_dataset
ds = load_dataset(f"hotpotqa-distractor:{sys.argv[1]}", limit=int(sys.argv[2]))
print(f"test set: {len(ds.examples)} questions; {ds.description}")
if len(ds.examples) < int(sys.argv[2]):
    print(f"warning: fewer than N_TEST={sys.argv[2]} questions", file=sys.stderr)
PY
  # The support judge scores citations; the default reward model is the rm step's proxy.
  has() { $PY -c "import sys; from $1 import $2 as d; sys.exit(not (d() / 'config.json').is_file())"; }
  has citeagent.eval.judge default_judge_dir || $CA train judge $JUDGE_ARGS
  has citeagent.reward default_reward_model_dir || $CA train rm $PROXY_RM_ARGS
fi

if step demos; then
  rm -f "$OUT/demos.jsonl"  # `train demos` appends
  $CA train demos --dataset hotpotqa --questions "$DEMO_QUESTIONS" --noise 0.2 --out "$OUT/demos.jsonl"
fi

if step bc; then
  # Full fine-tuning (the CPU run adapted the top 8 of 30 layers with LoRA for one epoch a stage).
  $CA train bc --demos "$OUT/demos.jsonl" --no-lora --epochs "$BC_EPOCHS" --answer-repeats 2 --batch-size 16 \
      --heldout 0.05 --out "$OUT/bc" $BC_EXTRA
fi

if step rm; then
  # The BC policy's own answers, 4 per training question at best-of-n's temperature, every pair
  # labelled by the gold judge (WebGPT's comparisons were of its own policy's samples).
  $PY scripts/overoptimization.py --policy "$OUT/bc" --reward-model default --n-max 4 --questions "$RM_QUESTIONS" \
      --temperature 0.3 --device "$DEVICE" --answers-out "$OUT/rm_data.jsonl" --json "$OUT/sweep_bc.json" \
      --out "$OUT/overopt_bc.png"
  $CA train rm --data "lfqa,hotpotqa-synth,hotpotqa-gold:$OUT/rm_data.jsonl" --max-train-pairs "$RM_PAIRS" \
      --out "$OUT/rm" $RM_EXTRA
fi

if step ppo; then
  # LoRA on every layer; lr below the CPU runs' 2e-4, which moved the policy too far at T=0.3
  # (ppo5), with --stop-approx-kl as the guard ppo6 added.
  $CA train ppo --policy "$OUT/bc" --reward-model "$OUT/rm" --out "$OUT/ppo" --temperature 0.3 \
      --iterations "$PPO_ITERS" --episodes-per-iter "$EPISODES" --rollout-batch-size "$ROLLOUT_BATCH" \
      --max-actions 20 --ppo-epochs 2 --minibatch-size 16 --lora-layers 0 --lr 5e-5 --value-lr 1e-4 \
      --stop-approx-kl 0.02 $PPO_EXTRA
fi

if step eval; then
  ev() { $CA eval --dataset "hotpotqa-distractor:$TEST" --limit "$N_TEST" --device "$DEVICE" --no-progress \
             --reward-model "$OUT/rm" "$@"; }
  ev --policy "$OUT/bc" --out "$OUT/eval/bc"
  ev --policy "$OUT/bc" --best-of "$BEST_OF" --temperature 0.3 --out "$OUT/eval/bc_best$BEST_OF"
  ev --policy "$OUT/ppo/final" --out "$OUT/eval/ppo"
  for b in "bc_best$BEST_OF" ppo; do
    $CA eval --compare "$OUT/eval/bc" "$OUT/eval/$b" | tee "$OUT/eval/compare_bc_vs_$b.txt"
  done
fi
