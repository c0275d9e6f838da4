# shellcheck shell=bash
# Shared by the experiment scripts: the CPU-scale data and training settings of each task, so a
# ticket, SWA, variant or sharpness run is comparable with the compare run of the same task and
# seed. TRAIN_EXAMPLES, MAXLEN, EPOCHS, LR, MODEL and EVAL_EXAMPLES override them (0 = all data).
DATA=${DATA:-../shared/data}
EVAL_EXAMPLES=${EVAL_EXAMPLES:-500}

data_for() {
  case $1 in
    rte) echo "$DATA/glue/RTE" ;;
    mrpc) echo "$DATA/glue/MRPC" ;;
    sst2) echo "$DATA/glue/SST-2" ;;
    qnli|mnli|qqp) echo "$DATA/glue_subsets/$1" ;;
    squad) echo "$DATA/squad" ;;
    *) echo "no data folder for task $1" >&2; return 2 ;;
  esac
}

# Training examples per task at CPU scale: SST-2's short sentences allow 1,000; QNLI's, MNLI's and
# QQP's pairs are short enough for max length 64, which buys twice the examples (1,280) per
# step-second; MRPC 2,560 pairs at length 64 (its pairs' median is 54 tokens, a tenth pass 70;
# Adam reached 68.4/71.1/75.7% with 640 and 1,280 pairs at length 128 and 2,560 at 64, the
# majority label being 68.4%); RTE 640 pairs at length 128 (it learns nothing at CPU scale: see
# compare_rte); SQuAD 400 questions at length 192 (each question's context makes several
# windows, and each is scored ~30 times per compare run).
train_examples_for() {
  case $1 in
    sst2) echo "${TRAIN_EXAMPLES:-1000}" ;;
    mrpc) echo "${TRAIN_EXAMPLES:-2560}" ;;
    qnli|mnli|qqp) echo "${TRAIN_EXAMPLES:-1280}" ;;
    squad) echo "${TRAIN_EXAMPLES:-400}" ;;
    *) echo "${TRAIN_EXAMPLES:-640}" ;;
  esac
}

# Empty with PRESET=full (then flatjax's defaults: 128, SQuAD 384).
max_length_for() {
  [ "${PRESET:-cpu}" = full ] && { echo "${MAXLEN:-}"; return 0; }
  case $1 in
    mrpc|qnli|mnli|qqp) echo "${MAXLEN:-64}" ;;
    squad) echo "${MAXLEN:-192}" ;;
    *) echo "${MAXLEN:-128}" ;;
  esac
}

# The data flags alone (fills EVAL_ARGS): TASK's dev set as compare scores it.
eval_args_for() {
  local task=$1 seed=$2
  local length
  length=$(max_length_for "$task")
  EVAL_ARGS=(--task "$task" --data "$(data_for "$task")" --seed "$seed" --no-progress)
  [ -n "$length" ] && EVAL_ARGS+=(--max-length "$length")
  case $task in
    qnli|mnli|qqp) [ "$EVAL_EXAMPLES" != 0 ] && EVAL_ARGS+=(--max-eval-examples "$EVAL_EXAMPLES") ;;
    squad) [ "${SQUAD_EVAL_EXAMPLES:-200}" != 0 ] && EVAL_ARGS+=(--max-eval-examples "${SQUAD_EVAL_EXAMPLES:-200}") ;;
  esac
  [ "$task" = squad ] && [ "${PRESET:-cpu}" != full ] && EVAL_ARGS+=(--doc-stride 64)
  return 0
}

# The training flags of compare's cpu preset for TASK and SEED (fills the array TRAIN_ARGS).
train_args_for() {
  local task=$1 seed=$2 train
  train=$(train_examples_for "$task")
  eval_args_for "$task" "$seed"
  TRAIN_ARGS=("${EVAL_ARGS[@]}" --model "${MODEL:-minilm}" --epochs "${EPOCHS:-2}" --batch-size 32
              --lr "${LR:-1e-4}")
  [ "$train" != 0 ] && TRAIN_ARGS+=(--max-train-examples "$train")
  return 0
}

# cofi_sst2.sh's run folder for a seed: cofi_runs_for RUNS SEED prints RUNS for seed 0 and
# RUNS-seedSEED for the others (sharpness_sst2.sh and int8_glue.sh find its teachers there).
cofi_runs_for() {
  if [ "$2" = 0 ]; then echo "$1"; else echo "$1-seed$2"; fi
}

# Exit 2 with one line on stderr unless RUN is a finished-or-started compare run.
need_compare_run() {
  [ -f "$1/compare.json" ] && return 0
  echo "${0##*/}: no compare run at $1; make it first with experiments/compare_tasks.sh" >&2
  exit 2
}

# The reference sparsity compare pruned TASK to (read from its compare.json): target_sparsity
# TASK SEED [RUN] (RUN: the compare run's folder, default runs/compare-TASK-seedSEED).
target_sparsity() {
  .venv/bin/python -c "import json,sys; print(json.load(open(sys.argv[1]))['target_sparsity'])" \
    "${3:-runs/compare-$1-seed$2}/compare.json"
}
