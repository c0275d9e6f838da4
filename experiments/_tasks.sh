# Shared by the experiment scripts: the CPU-scale data and training settings of each task,
# matching experiments/compare_tasks.sh, so a ticket, SWA or variant run is comparable with the
# compare run of the same task and seed.
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

# The training flags of compare's cpu preset for TASK and SEED (fills the array TRAIN_ARGS).
train_args_for() {
  local task=$1 seed=$2 train
  train=${TRAIN_EXAMPLES:-640}; [ "$task" = sst2 ] && train=${TRAIN_EXAMPLES:-1000}
  TRAIN_ARGS=(--task "$task" --data "$(data_for "$task")" --seed "$seed" --no-progress
              --model "${MODEL:-minilm}" --epochs "${EPOCHS:-2}" --batch-size 32 --lr "${LR:-1e-4}")
  [ "$train" != 0 ] && TRAIN_ARGS+=(--max-train-examples "$train")
  case $task in
    qnli|mnli|qqp|squad) [ "$EVAL_EXAMPLES" != 0 ] && TRAIN_ARGS+=(--max-eval-examples "$EVAL_EXAMPLES") ;;
  esac
  [ "$task" = squad ] && TRAIN_ARGS+=(--max-length 256 --doc-stride 64)
  return 0
}

# The reference sparsity compare pruned TASK to (read from its compare.json).
target_sparsity() {
  .venv/bin/python -c "import json,sys; print(json.load(open(sys.argv[1]))['target_sparsity'])" \
    "runs/compare-$1-seed$2/compare.json"
}

# The data flags alone (fills EVAL_ARGS), for flatjax oneshot on TASK's dev set as compare scores it.
eval_args_for() {
  local task=$1 seed=$2
  EVAL_ARGS=(--task "$task" --data "$(data_for "$task")" --seed "$seed" --no-progress)
  case $task in
    qnli|mnli|qqp|squad) [ "$EVAL_EXAMPLES" != 0 ] && EVAL_ARGS+=(--max-eval-examples "$EVAL_EXAMPLES") ;;
  esac
  [ "$task" = squad ] && EVAL_ARGS+=(--max-length 256 --doc-stride 64)
  return 0
}
