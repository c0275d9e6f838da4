"""``flatjax train | eval | imp | compare | tickets | oneshot | cofi | sharpness | quantize | report``:
the command line.

Bad input (an unknown task, a missing file, a malformed row, a bad flag value)
prints one line, ``flatjax: error: ...``, and exits with status 2, leaving
nothing in the output folder; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import sys

from flatjax import provenance
from flatjax.errors import FlatjaxInputError, TrainingDiverged
from flatjax.runtime import tune_malloc
from flatjax.sparsity.hardconcrete import GATE_NAMES as _GATE_NAMES


def _checked(cast, kind: str, ok, need: str):
  """An argparse type: ``cast`` of the text (else "expected KIND"), which must pass ``ok``."""
  def parse(text: str):
    try:
      value = cast(text)
    except ValueError:
      raise argparse.ArgumentTypeError(f"expected {kind}, got {text!r}") from None
    if not ok(value):  # NaN fails too
      raise argparse.ArgumentTypeError(f"must be {need}, got {value}")
    return value
  return parse


_positive_int = _checked(int, "an integer", lambda v: v > 0, "positive")
_nonnegative_int = _checked(int, "an integer", lambda v: v >= 0, "non-negative")
_positive_float = _checked(float, "a number", lambda v: v > 0, "positive")


def _key_value(text: str) -> tuple[str, float]:
  key, sep, value = text.partition("=")
  try:
    if not sep:
      raise ValueError
    return key.strip(), float(value)
  except ValueError:
    raise argparse.ArgumentTypeError(f"expected NAME=NUMBER, got {text!r}") from None


def _label_value(text: str) -> tuple[str, str]:
  label, sep, value = text.partition("=")
  if not sep or not label.strip() or not value.strip():
    raise argparse.ArgumentTypeError(f"expected LABEL=PATH, got {text!r}")
  return label.strip(), value.strip()


def _add_data_flags(p: argparse.ArgumentParser, task_help: str | None = None) -> None:
  """The data and evaluation flags; ``--task`` is optional when ``task_help``
  says where its default comes from."""
  p.add_argument("--task", required=task_help is None,
                 help=task_help or "cola, sst2, mrpc, qqp, stsb, mnli, qnli, rte or squad")
  p.add_argument("--data", default=None,
                 help="a hub dataset name, a GLUE TSV folder, a folder of {split}.jsonl/csv/"
                      "parquet files, or a SQuAD json (default: the Hugging Face hub)")
  p.add_argument("--eval-data", default=None, help="evaluation data if not in --data")
  p.add_argument("--max-length", type=_positive_int, default=None,
                 help="tokens per sequence (default 128; SQuAD 384)")
  p.add_argument("--doc-stride", type=_positive_int, default=128, help="SQuAD window overlap")
  p.add_argument("--pad-to", choices=("longest", "max_length"), default="longest",
                 help="pad each batch to its longest sequence (rounded up to a multiple of 8) "
                      "or always to --max-length")
  p.add_argument("--max-eval-examples", type=_positive_int, default=None)
  p.add_argument("--eval-batch-size", type=_positive_int, default=64)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                 help="compute dtype (params stay float32)")
  p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _defaults_of(setting: str) -> str:
  """``"defaults: sam 0.05, asam 0.5"``: each registered optimizer taking ``setting``."""
  from flatjax.optim import registry
  found = [f"{name} {registry.settings(name)[setting]:g}" for name in registry.names()
           if setting in registry.settings(name)]
  return "defaults: " + ", ".join(found)


def _add_train_flags(p: argparse.ArgumentParser, several_optimizers: bool) -> None:
  from flatjax.optim import registry
  p.add_argument("--model", default="minilm",
                 help="a model folder, a hub id, or 'minilm' (default)")
  if several_optimizers:
    p.add_argument("--optimizer", action="append", default=None,
                   help=f"one of {', '.join(registry.names())}; repeat for several "
                        "(default: adam and sam)")
  else:
    p.add_argument("--optimizer", default="adam", help=f"one of {', '.join(registry.names())}")
  p.add_argument("--opt-arg", type=_key_value, action="append", default=[],
                 metavar="NAME=VALUE", help="optimizer-specific setting, e.g. rho=0.05")
  flat = p.add_argument_group("SAM and its variants (each optimizer's own defaults "
                              "apply when a flag is not given)")
  flat.add_argument("--rho", type=_positive_float, default=None,
                    help="neighbourhood radius (gsam: at the peak learning rate); "
                         + _defaults_of("rho"))
  flat.add_argument("--eta", type=_positive_float, default=None,
                    help="asam's offset; " + _defaults_of("eta"))
  flat.add_argument("--k", type=_positive_int, default=None,
                    help="looksam: an exact SAM gradient every K steps; " + _defaults_of("k"))
  flat.add_argument("--alpha", type=float, default=None,
                    help="gsam: surrogate-gap ascent weight; looksam: weight of the reused "
                         "component; " + _defaults_of("alpha"))
  flat.add_argument("--rho-min", type=float, default=None,
                    help="gsam: rho at learning rate 0; " + _defaults_of("rho_min"))
  p.add_argument("--swa", default=None, metavar="RECIPE",
                 help="also average the weights (SWA) and evaluate the average: 'paper' "
                      "(end-of-epoch weights of the second half of the run), FRACTION "
                      "(every epoch from that fraction of the run) or FRACTION:STEPS")
  p.add_argument("--epochs", type=_positive_float, default=3.0)
  p.add_argument("--batch-size", type=_positive_int, default=32)
  p.add_argument("--lr", type=_positive_float, default=2e-5)
  p.add_argument("--weight-decay", type=float, default=0.0)
  p.add_argument("--warmup-steps", type=int, default=0)
  p.add_argument("--clip-norm", type=_positive_float, default=None)
  p.add_argument("--max-train-examples", type=_positive_int, default=None)
  p.add_argument("--eval-every", type=_positive_int, default=None,
                 help="evaluate every N steps (default: every epoch)")
  p.add_argument("--save-every", type=_positive_int, default=None,
                 help="also checkpoint every N steps")
  p.add_argument("--log-every", type=_positive_int, default=20)
  p.add_argument("--no-keep-best", action="store_true",
                 help="do not save the best-on-validation model")
  p.add_argument("--mesh", default=None, metavar="data=N,model=M",
                 help="device mesh: the batch split over data, the big kernels over model "
                      "(default: every device data parallel)")


def _add_mask_flags(p: argparse.ArgumentParser) -> None:
  from flatjax.sparsity.masks import GRANULARITIES, SCOPES
  p.add_argument("--scope", default="bert",
                 help=f"prunable params: {', '.join(SCOPES)} (default bert: Chen et al.'s "
                      "encoder kernels and the pooler) or a regex on param paths")
  p.add_argument("--granularity", choices=GRANULARITIES, default="global",
                 help="rank scores over the whole scope (global) or within each tensor")
  p.add_argument("--method", default="magnitude",
                 help="the scores pruned by: magnitude (default), random, or another "
                      "registered method whose scores need no training")


def _add_train_command(sub) -> None:
  train = sub.add_parser("train", help="fine-tune a BERT checkpoint on a task")
  _add_data_flags(train)
  _add_train_flags(train, several_optimizers=False)
  train.add_argument("--mask", default=None, metavar="PATH",
                     help="train under this pruning mask (a mask file, or a run folder "
                          "holding mask.safetensors): pruned weights are 0 and stay 0")
  prune = train.add_argument_group("pruning during fine-tuning")
  prune.add_argument("--pruning", default=None, metavar="METHOD",
                     help="learn a mask while training, on the cubic schedule: movement "
                          "(Sanh et al. 2020), magnitude (gradual magnitude pruning, Zhu & "
                          "Gupta 2017), random, or any registered method")
  prune.add_argument("--sparsity", type=float, default=0.6,
                     help="final sparsity of the prunable weights (0.6)")
  prune.add_argument("--pruning-begin", type=float, default=0.1,
                     help="fraction of the run before pruning starts (0.1)")
  prune.add_argument("--pruning-end", type=float, default=0.7,
                     help="fraction of the run at which the cubic schedule reaches "
                          "--sparsity (0.7)")
  prune.add_argument("--pruning-every", type=_positive_int, default=1,
                     help="steps between mask updates (1)")
  prune.add_argument("--pruning-granularity", choices=("per_tensor", "global"),
                     default="per_tensor", help="top-k within each tensor (Sanh et al.) or "
                                                "over the whole scope")
  prune.add_argument("--pruning-scope", default="bert", help="prunable params (as --scope)")
  train.add_argument("--stop-after-steps", type=_positive_int, default=None,
                     help="stop (checkpointed) after N steps; continue later with --resume")
  train.add_argument("--output", required=True, help="run folder")
  train.add_argument("--resume", action="store_true",
                     help="continue the run in --output from its last checkpoint")


def _add_imp_command(sub) -> None:
  imp = sub.add_parser("imp", help="iterative magnitude pruning during fine-tuning (Chen et "
                                   "al. 2020): rounds of train, prune, rewind")
  _add_data_flags(imp)
  _add_train_flags(imp, several_optimizers=True)
  imp.add_argument("--mode", choices=("imp", "std"), default="imp",
                   help="imp: rewind the kept weights to the pre-trained ones each round; "
                        "std: keep training the pruned weights")
  imp.add_argument("--rate", type=_positive_float, default=0.1,
                   help="fraction of the original prunable weights removed per round (0.1)")
  imp.add_argument("--rounds", type=_positive_int, default=9,
                   help="pruning rounds after the full model (9: up to 90%% sparsity)")
  _add_mask_flags(imp)
  imp.add_argument("--tolerance", type=float, default=1.0,
                   help="a winning ticket's dev metric may be this many points below the full "
                        "model's (1.0)")
  imp.add_argument("--stop-after-steps", type=_positive_int, default=None,
                   help="stop each optimizer's run after N training steps over all its "
                        "rounds; continue with --resume")
  imp.add_argument("--output", required=True,
                   help="folder: one IMP run per optimizer in OUTPUT/OPTIMIZER, plus the plot")
  imp.add_argument("--resume", action="store_true", help="continue the runs in --output")


def _add_compare_command(sub) -> None:
  cmp_ = sub.add_parser("compare", help="train flat, then compress: fine-tune with each "
                        "optimizer, then IMP, one-shot pruning and int8 of each, in one table")
  _add_data_flags(cmp_)
  _add_train_flags(cmp_, several_optimizers=True)
  cmp_.add_argument("--preset", choices=("cpu", "full"), default="cpu",
                    help="cpu: MiniLM, 640 training examples, 2 epochs, lr 1e-4, IMP in 2 "
                         "rounds, scope encoder (MiniLM's pooler is untrained); full: the "
                         "paper's bert-base, all data, 3 epochs, lr 2e-5, IMP 10%% per round, "
                         "scope bert. Flags given win")
  cmp_.add_argument("--sparsity", type=_positive_float, default=None,
                    help="IMP and one-shot target (default: the task's reference sparsity, "
                         "e.g. RTE 60%%)")
  cmp_.add_argument("--imp-rounds", type=_positive_int, default=None,
                    help="IMP rounds to reach the sparsity (cpu: 2; full: 10%% a round)")
  cmp_.add_argument("--oneshot-step", type=_positive_float, default=0.1,
                    help="one-shot curve step (0.1)")
  _add_mask_flags(cmp_)
  cmp_.add_argument("--quant-batch-size", type=_positive_int, default=32,
                    help="int8 evaluation batch size (32)")
  cmp_.add_argument("--stop-after-steps", type=_positive_int, default=None,
                    help="stop each optimizer's IMP after N steps; continue with --resume")
  cmp_.add_argument("--output", default=None, help="folder (default: runs/compare-TASK)")
  cmp_.add_argument("--resume", action="store_true", help="continue the run in --output")
  # None: the preset's value (flags given on the command line win).
  cmp_.set_defaults(model=None, epochs=None, lr=None, batch_size=None, max_length=None,
                    max_train_examples=None, warmup_steps=None, scope=None)


def _add_tickets_command(sub) -> None:
  tickets = sub.add_parser("tickets", help="fine-tune the pre-trained weights under given "
                                           "masks with each optimizer (Table 6, transfer)")
  _add_data_flags(tickets)
  _add_train_flags(tickets, several_optimizers=True)
  tickets.add_argument("--mask", type=_label_value, action="append", default=[],
                       required=True, metavar="LABEL=PATH",
                       help="a mask: a file, a run folder, or an IMP run folder (with "
                            "--sparsity); repeat for several")
  tickets.add_argument("--sparsity", type=float, default=None,
                       help="which round's mask to take from IMP run folders")
  tickets.add_argument("--random-like", default=None, metavar="LABEL",
                       help="also a random mask with the per-tensor sparsities of LABEL's")
  tickets.add_argument("--output", required=True, help="grid folder")
  tickets.add_argument("--resume", action="store_true", help="continue the grid in --output")


def _add_oneshot_command(sub) -> None:
  oneshot = sub.add_parser("oneshot", help="prune fine-tuned models by magnitude in steps, "
                                           "without retraining, and evaluate each step")
  _add_data_flags(oneshot)
  oneshot.add_argument("--model", type=_label_value, action="append", default=[], required=True,
                       metavar="LABEL=FOLDER", help="a fine-tuned model folder (e.g. RUN/best); "
                                                    "repeat for several curves")
  oneshot.add_argument("--step", type=_positive_float, default=0.05, help="sparsity step (0.05)")
  oneshot.add_argument("--max", type=float, default=0.6, help="largest sparsity (0.6)")
  _add_mask_flags(oneshot)
  oneshot.add_argument("--output", required=True,
                       help="folder for oneshot.jsonl, oneshot.md and oneshot.png (rows already "
                            "there are reused)")


def _add_cofi_command(sub) -> None:
  cofi = sub.add_parser("cofi", help="CoFi structured pruning with distillation from a "
                                     "fine-tuned teacher, exported as a smaller dense BERT")
  _add_data_flags(cofi, task_help="the task (default: the teacher's); --data defaults to "
                                   "the teacher run's")
  cofi.add_argument("--teacher", required=True,
                    help="a flatjax train run folder (its best/ model; task, data and base "
                         "model are read from it) or a fine-tuned model folder")
  cofi.add_argument("--student", default="pretrained",
                    help="'pretrained': the teacher run's pre-trained model (CoFi's start, "
                         "default); 'teacher': the teacher's fine-tuned weights; or a model")
  cofi.add_argument("--target-sparsity", type=float, default=0.95,
                    help="of the encoder's prunable weights (0.95)")
  cofi.add_argument("--pruning-epochs", type=_positive_float, default=20.0,
                    help="epochs with gates learned, the distillation-only ones included (20)")
  cofi.add_argument("--prepruning-epochs", type=float, default=1.0,
                    help="distillation-only epochs before the gates start (1)")
  cofi.add_argument("--lagrangian-warmup-epochs", type=float, default=2.0,
                    help="epochs over which the target sparsity rises from 0 (2)")
  cofi.add_argument("--finetune-epochs", type=float, default=20.0,
                    help="epochs with the gates fixed, distillation kept (20)")
  cofi.add_argument("--lr", type=_positive_float, default=2e-5, help="pruning-phase lr (2e-5)")
  cofi.add_argument("--finetune-lr", type=_positive_float, default=3e-5,
                    help="fine-tuning-phase lr, constant (3e-5)")
  cofi.add_argument("--reg-lr", type=_positive_float, default=0.01,
                    help="lr of the gates and the Lagrange multipliers (0.01)")
  cofi.add_argument("--gate-init", type=float, default=10.0,
                    help="initial log-alpha of the head, attention-block, FFN-block and hidden "
                         "gates (CoFi's 10: all but surely open; lower for short runs)")
  cofi.add_argument("--layer-weight", type=float, default=None,
                    help="layer-distillation weight (default by task: 0.9 SST-2/QNLI, "
                         "0.7 QQP/MNLI, 0.9 others)")
  cofi.add_argument("--prediction-weight", type=float, default=None,
                    help="prediction-distillation weight (default by task: 0.1 or 0.3)")
  cofi.add_argument("--temperature", type=_positive_float, default=2.0,
                    help="distillation temperature (2)")
  cofi.add_argument("--gates", default=",".join(_GATE_NAMES),
                    help="gate groups to learn, comma separated (default all: "
                         f"{','.join(_GATE_NAMES)})")
  cofi.add_argument("--train-embeddings", action="store_true",
                    help="update the embeddings too (CoFi freezes them)")
  cofi.add_argument("--batch-size", type=_positive_int, default=32)
  cofi.add_argument("--mesh", default=None, metavar="data=N,model=M",
                    help="device mesh, as for train (default: every device data parallel)")
  cofi.add_argument("--max-train-examples", type=_positive_int, default=None)
  cofi.add_argument("--eval-every", type=_positive_int, default=None,
                    help="steps (default: every epoch)")
  cofi.add_argument("--stop-after-steps", type=_positive_int, default=None,
                    help="stop early with a checkpoint, as if interrupted")
  cofi.add_argument("--output", required=True, help="run folder")
  cofi.add_argument("--resume", action="store_true", help="continue the run in --output")


def _add_sharpness_command(sub) -> None:
  sh = sub.add_parser("sharpness", help="flatness of a fine-tuned model: Keskar epsilon-"
                     "sharpness, Hessian top eigenvalue and trace, loss surfaces")
  sh.add_argument("run", help="a flatjax train run folder (its best/ model) or a model folder")
  sh.add_argument("--task", default=None, help="the task (default: the run's)")
  sh.add_argument("--data", default=None, help="the data (default: the run's)")
  sh.add_argument("--split", choices=("train", "validation"), default="train",
                  help="the split whose loss is measured (train, as Keskar et al.)")
  sh.add_argument("--examples", type=_positive_int, default=256,
                  help="a fixed, seeded sample of this many examples (256)")
  sh.add_argument("--batch-size", type=_positive_int, default=32)
  sh.add_argument("--max-length", type=_positive_int, default=None,
                  help="tokens per sequence (default: the run's)")
  sh.add_argument("--seed", type=_nonnegative_int, default=0,
                  help="seeds the sample, the subspace, the probes and the directions")
  sh.add_argument("--epsilon", type=_positive_float, action="append", default=None,
                  help="box size of the epsilon-sharpness, repeatable (1e-3 and 5e-3)")
  sh.add_argument("--subspace-dim", type=_positive_int, default=None,
                  help="maximise in a random subspace of this dimension (default: full space)")
  sh.add_argument("--maxiter", type=_positive_int, default=10, help="L-BFGS-B iterations (10)")
  sh.add_argument("--hessian-iterations", type=_nonnegative_int, default=20,
                  help="power iterations at most, 0 skips (20)")
  sh.add_argument("--hessian-tol", type=_positive_float, default=1e-3,
                  help="power iteration stops at this relative change (1e-3)")
  sh.add_argument("--hutchinson-samples", type=_nonnegative_int, default=10,
                  help="Rademacher probes of the trace estimate, 0 skips (10)")
  sh.add_argument("--surface-points", type=_nonnegative_int, default=21,
                  help="1-D loss surface points, 0 skips (21)")
  sh.add_argument("--contour-points", type=_nonnegative_int, default=11,
                  help="2-D loss surface points per axis, 0 skips (11)")
  sh.add_argument("--radius", type=_positive_float, default=1.0,
                  help="surfaces span [-radius, radius] along each direction (1)")
  sh.add_argument("--output", default=None, help="results folder (default: RUN/sharpness)")
  sh.add_argument("--no-progress", action="store_true", help="no progress messages")


def _add_quantize_command(sub) -> None:
  from flatjax.quant import int8
  qz = sub.add_parser("quantize", help="int8 post-training quantization of a fine-tuned model: "
                      "dev metrics in float32 and int8, int8 model folder, file sizes")
  qz.add_argument("run", help="a flatjax train run folder (its best/ model) or a model folder")
  qz.add_argument("--scheme", choices=int8.names(), action="append", default=None,
                  help="quantization recipe, repeatable (default: dynamic, PyTorch's "
                       "quantize_dynamic on every Linear)")
  qz.add_argument("--task", default=None, help="the task (default: the run's)")
  qz.add_argument("--data", default=None,
                  help="the evaluation data (default: the run's eval data, else its data)")
  qz.add_argument("--batch-size", type=_positive_int, default=32,
                  help="eval batch size (32); dynamic int8 scales depend on the batch")
  qz.add_argument("--max-length", type=_positive_int, default=None,
                  help="tokens per sequence (default: the run's)")
  qz.add_argument("--max-eval-examples", type=_positive_int, default=None)
  qz.add_argument("--doc-stride", type=_positive_int, default=None,
                  help="SQuAD window overlap (default: the run's, else 128)")
  qz.add_argument("--pad-to", choices=("longest", "max_length"), default="longest",
                  help="pad each batch to its longest sequence or always to --max-length")
  qz.add_argument("--seed", type=_nonnegative_int, default=0,
                  help="seeds the --max-eval-examples subset")
  qz.add_argument("--no-save", action="store_true", help="score only; write no int8 model")
  qz.add_argument("--output", default=None, help="results folder (default: RUN/int8)")
  qz.add_argument("--no-progress", action="store_true", help="no progress messages")


def _add_eval_command(sub) -> None:
  ev = sub.add_parser("eval", help="evaluate a model folder (e.g. RUN/best, or an int8 folder "
                      "from flatjax quantize) on a task")
  _add_data_flags(ev)
  ev.add_argument("--model", required=True, help="a model folder, hub id or 'minilm'")
  ev.add_argument("--output", default=None, help="write the metrics JSON here too")


def _add_report_command(sub) -> None:
  rp = sub.add_parser("report", help="collect every experiment's results into one report: "
                      "each paper claim, the paper's number, flatjax's, held or not")
  rp.add_argument("--results", default="experiments/results",
                  help="the experiments' results folder (experiments/results)")
  rp.add_argument("--output", default=None, help="the report (default: RESULTS/README.md)")
  rp.add_argument("--overhead", default=None,
                  help="benchmarks/sam_overhead.py's JSON lines, for the SAM variants' cost "
                       "(default: benchmarks/results/sam_overhead_cpu.jsonl beside RESULTS)")


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog="flatjax", description="Train flat, then compress: BERT fine-tuning in JAX.")
  sub = parser.add_subparsers(dest="command", required=True)
  _add_train_command(sub)
  _add_imp_command(sub)
  _add_compare_command(sub)
  _add_tickets_command(sub)
  _add_oneshot_command(sub)
  _add_cofi_command(sub)
  _add_sharpness_command(sub)
  _add_quantize_command(sub)
  _add_eval_command(sub)
  _add_report_command(sub)
  return parser


def _max_length(args, task) -> int:
  """``--max-length``, else the paper's: 128 for GLUE, 384 for SQuAD."""
  return args.max_length or task.default_max_length


def _optimizer_args(args) -> dict[str, float]:
  """``--opt-arg`` settings, overridden by the named flags that were given."""
  settings = dict(args.opt_arg)
  for name in ("rho", "eta", "k", "alpha", "rho_min"):
    if getattr(args, name) is not None:
      settings[name] = float(getattr(args, name))
  return settings


def _train_config(args, output: str, optimizer: str | None = None, **extra):
  """The TrainConfig the shared training flags describe."""
  from flatjax.data.tasks import get_task
  from flatjax.recipes.finetune import TrainConfig
  task = get_task(args.task)
  return TrainConfig(
      task=task.name, output=output, model=args.model, data=args.data,
      eval_data=args.eval_data, optimizer=optimizer or args.optimizer, epochs=args.epochs,
      batch_size=args.batch_size, eval_batch_size=args.eval_batch_size,
      max_length=_max_length(args, task),
      doc_stride=args.doc_stride, lr=args.lr, weight_decay=args.weight_decay,
      warmup_steps=args.warmup_steps, clip_norm=args.clip_norm,
      optimizer_args=_optimizer_args(args), swa=args.swa, seed=args.seed,
      max_train_examples=args.max_train_examples, max_eval_examples=args.max_eval_examples,
      eval_every=args.eval_every, save_every=args.save_every, log_every=args.log_every,
      keep_best=not args.no_keep_best, dtype=args.dtype, pad_to=args.pad_to,
      mesh=args.mesh, progress=not args.no_progress, **extra)


def _train(args) -> None:
  from flatjax.recipes.finetune import fit
  mask = None
  if args.mask is not None:
    from flatjax.recipes.tickets import resolve_mask
    mask = str(resolve_mask(args.mask))
  config = _train_config(
      args, args.output, mask=mask, stop_after_steps=args.stop_after_steps,
      pruning=args.pruning, pruning_sparsity=args.sparsity, pruning_begin=args.pruning_begin,
      pruning_end=args.pruning_end, pruning_every=args.pruning_every,
      pruning_granularity=args.pruning_granularity, pruning_scope=args.pruning_scope)
  results = fit(config, resume=args.resume)
  print(json.dumps(results, indent=2))


def _optimizers(args) -> list[str]:
  names = args.optimizer or ["adam", "sam"]
  if len(set(names)) != len(names):
    raise FlatjaxInputError(f"optimizer given twice: {' '.join(names)}")
  return names


def _imp(args) -> None:
  from pathlib import Path
  from flatjax.recipes import imp, plots
  from flatjax.console import say
  out = Path(args.output)
  configs = {opt: imp.IMPConfig(
      train=_train_config(args, str(out / opt), opt), mode=args.mode, rate=args.rate,
      rounds=args.rounds, granularity=args.granularity, scope=args.scope, method=args.method,
      tolerance=args.tolerance) for opt in _optimizers(args)}
  for config in configs.values():  # every setting checked before the first round runs
    config.validate()
  reports = {}
  for opt, config in configs.items():
    run = Path(config.train.output)
    config.stop_after_steps = args.stop_after_steps
    reports[opt] = imp.run_imp(config, resume=args.resume and (run / "imp.json").exists())
    if not reports[opt]["finished"]:
      say(f"stopped in the {opt} run; continue with --resume")
      print(json.dumps(reports, indent=2))
      return
  curves = {f"{opt} ({args.mode})": imp.read_rounds(out / opt) for opt in configs}
  plots.plot_sparsity_curves(curves, out / "imp.png", title=f"{args.task}: IMP ({args.mode})")
  table = imp.summary_table(curves)
  (out / "summary.md").write_text(table + "\n")
  print(table)


def _compare(args) -> None:
  from flatjax.recipes import compare
  from flatjax.data.tasks import get_task
  preset = compare.PRESETS[args.preset]
  for name in ("model", "epochs", "lr", "batch_size", "max_length", "max_train_examples",
               "warmup_steps", "scope"):
    if getattr(args, name) is None:
      setattr(args, name, preset[name])
  task = get_task(args.task)
  output = args.output or f"runs/compare-{task.name}"
  config = compare.CompareConfig(
      train=_train_config(args, output, "adam"), optimizers=tuple(_optimizers(args)),
      sparsity=args.sparsity,
      imp_rounds=args.imp_rounds if args.imp_rounds is not None else preset["imp_rounds"],
      oneshot_step=args.oneshot_step, scope=args.scope, granularity=args.granularity,
      method=args.method,
      quant_batch_size=args.quant_batch_size)
  config.train.stop_after_steps = args.stop_after_steps
  results = compare.run_compare(config, resume=args.resume)
  if not results["finished"]:
    return
  from pathlib import Path
  print((Path(output) / "summary.md").read_text())


def _cofi(args) -> None:
  from flatjax.recipes import cofi
  config = cofi.CofiConfig(
      teacher=args.teacher, output=args.output, task=args.task, data=args.data,
      eval_data=args.eval_data, student=args.student, target_sparsity=args.target_sparsity,
      pruning_epochs=args.pruning_epochs, prepruning_epochs=args.prepruning_epochs,
      lagrangian_warmup_epochs=args.lagrangian_warmup_epochs,
      finetune_epochs=args.finetune_epochs, lr=args.lr, finetune_lr=args.finetune_lr,
      reg_lr=args.reg_lr, gate_init=args.gate_init, batch_size=args.batch_size, eval_batch_size=args.eval_batch_size,
      max_length=args.max_length, doc_stride=args.doc_stride, pad_to=args.pad_to,
      dtype=args.dtype, layer_weight=args.layer_weight,
      prediction_weight=args.prediction_weight, temperature=args.temperature,
      gates=tuple(g for g in args.gates.split(",") if g),
      freeze_embeddings=not args.train_embeddings, seed=args.seed,
      max_train_examples=args.max_train_examples, max_eval_examples=args.max_eval_examples,
      eval_every=args.eval_every, stop_after_steps=args.stop_after_steps, mesh=args.mesh,
      progress=not args.no_progress)
  results = cofi.run_cofi(config, resume=args.resume)
  print(json.dumps(results, indent=2))


def _tickets(args) -> None:
  from flatjax.recipes import tickets
  masks = {label: str(tickets.resolve_mask(path, args.sparsity)) for label, path in args.mask}
  if len(masks) != len(args.mask):
    raise FlatjaxInputError("two masks share a label")
  config = tickets.TicketsConfig(train=_train_config(args, args.output, "adam"), masks=masks,
                                 optimizers=tuple(_optimizers(args)),
                                 random_like=args.random_like, random_seed=args.seed)
  rows = tickets.run_tickets(config, resume=args.resume)
  print(tickets.grid_table(rows))


def _oneshot(args) -> None:
  from flatjax.recipes import oneshot
  from flatjax.console import say
  models = dict(args.model)
  if len(models) != len(args.model):
    raise FlatjaxInputError("two models share a label")
  base = _train_config_for_eval(args)
  oneshot.run_oneshot(base, models, args.output, step=args.step, maximum=args.max,
                      scope=args.scope, granularity=args.granularity, method=args.method,
                      log=say)
  from pathlib import Path
  print((Path(args.output) / "oneshot.md").read_text())


def _train_config_for_eval(args):
  """A TrainConfig holding only what evaluation reads (data, lengths, batch size)."""
  from flatjax.data.tasks import get_task
  from flatjax.recipes.finetune import TrainConfig
  task = get_task(args.task)
  return TrainConfig(task=task.name, output=args.output, data=args.data,
                     eval_data=args.eval_data, max_length=_max_length(args, task),
                     doc_stride=args.doc_stride, eval_batch_size=args.eval_batch_size,
                     max_eval_examples=args.max_eval_examples, seed=args.seed,
                     dtype=args.dtype, pad_to=args.pad_to, progress=not args.no_progress)


def _sharpness(args) -> None:
  from flatjax.recipes import sharpness as runner
  config = runner.SharpnessConfig(
      run=args.run, output=args.output, task=args.task, data=args.data, split=args.split,
      examples=args.examples, batch_size=args.batch_size, max_length=args.max_length,
      seed=args.seed, epsilons=tuple(args.epsilon or (1e-3, 5e-3)),
      subspace_dim=args.subspace_dim, maxiter=args.maxiter,
      hessian_iterations=args.hessian_iterations, hessian_tol=args.hessian_tol,
      hutchinson_samples=args.hutchinson_samples, surface_points=args.surface_points,
      contour_points=args.contour_points, radius=args.radius, progress=not args.no_progress)
  results = runner.run_sharpness(config)
  summary = {"loss": results["loss"],
             "epsilon_sharpness": {f"{r['epsilon']:g}": r["sharpness"] for r in results["keskar"]}}
  for name in ("hessian_top_eigenvalue", "hessian_trace"):
    if name in results:
      summary[name] = results[name]["eigenvalue" if name.endswith("eigenvalue") else "trace"]
  print(json.dumps(summary, indent=2))


def _quantize(args) -> None:
  from flatjax.recipes import quantize as runner
  config = runner.QuantizeConfig(
      run=args.run, output=args.output, schemes=tuple(args.scheme or ("dynamic",)),
      task=args.task, data=args.data, batch_size=args.batch_size, max_length=args.max_length,
      max_eval_examples=args.max_eval_examples, doc_stride=args.doc_stride, pad_to=args.pad_to,
      seed=args.seed, save=not args.no_save, progress=not args.no_progress)
  results = runner.run_quantize(config)
  summary = {"float32": results["float32"],
             "int8": {name: {"metrics": r["metrics"], "file_ratio": r["sizes"]["ratio"]}
                      for name, r in results["int8"].items()}}
  print(json.dumps(summary, indent=2))


def _eval(args) -> None:
  from pathlib import Path
  from flatjax.data.tasks import get_task
  from flatjax.recipes import evaluate as evaluation
  task = get_task(args.task)
  if args.output is not None and Path(args.output).exists():
    raise FlatjaxInputError(f"--output {args.output} already exists")
  scores = evaluation.evaluate_model(
      args.model, task, args.data if args.eval_data is None else args.eval_data,
      max_length=_max_length(args, task),
      batch_size=args.eval_batch_size, max_examples=args.max_eval_examples, seed=args.seed,
      doc_stride=args.doc_stride, dtype=args.dtype, pad_to=args.pad_to)
  text = json.dumps(scores, indent=2)
  print(text)
  if args.output is not None:
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(text + "\n")


def _enable_compilation_cache() -> None:
  """Keeps compiled XLA programs across runs (``~/.cache/flatjax/xla``).

  A run compiles its steps once per padded batch length; a second run of the
  same model and shapes loads them instead. ``FLATJAX_XLA_CACHE=""`` turns it
  off; JAX's own ``JAX_COMPILATION_CACHE_DIR`` takes precedence.
  """
  import os
  import jax
  if jax.config.jax_compilation_cache_dir:
    return
  path = os.environ.get("FLATJAX_XLA_CACHE",
                        os.path.join(os.path.expanduser("~"), ".cache", "flatjax", "xla"))
  if path:
    jax.config.update("jax_compilation_cache_dir", path)


def _join_distributed() -> None:
  """With ``FLATJAX_DISTRIBUTED=1`` (``tpu_setup.sh run`` sets it on every worker),
  ``jax.distributed.initialize()`` before JAX starts: on a TPU pod slice (or a
  cluster JAX detects, e.g. SLURM) it finds the other processes by itself;
  elsewhere JAX_COORDINATOR_ADDRESS (read by JAX), JAX_NUM_PROCESSES and
  JAX_PROCESS_ID (read here) say where they are."""
  import os
  if os.environ.get("FLATJAX_DISTRIBUTED", "") in ("", "0"):
    return
  import jax
  given = {}
  for name, arg in (("JAX_NUM_PROCESSES", "num_processes"), ("JAX_PROCESS_ID", "process_id")):
    if os.environ.get(name):
      try:
        given[arg] = int(os.environ[name])
      except ValueError:
        raise FlatjaxInputError(f"{name}={os.environ[name]!r} is not an integer") from None
  jax.distributed.initialize(**given)


def _report(args) -> None:
  from pathlib import Path
  from flatjax.report import write_report
  path = write_report(Path(args.results), args.output and Path(args.output),
                      args.overhead and Path(args.overhead))
  print(f"wrote {path}")


def main(argv: list[str] | None = None) -> int:
  parser = build_parser()
  args = parser.parse_args(argv)  # argparse itself exits 2 on bad flags
  # Before JAX starts its threads: XLA:CPU's per-step scratch buffer is then
  # reused instead of page-faulted in afresh every step (flatjax.runtime).
  tune_malloc()
  _enable_compilation_cache()
  argv = sys.argv[1:] if argv is None else list(argv)
  try:
    _join_distributed()
    with provenance.command(["flatjax", *argv]):
      {"train": _train, "eval": _eval, "imp": _imp, "tickets": _tickets,
       "oneshot": _oneshot, "cofi": _cofi, "sharpness": _sharpness,
       "quantize": _quantize, "compare": _compare, "report": _report}[args.command](args)
  except FlatjaxInputError as e:
    print(f"flatjax: error: {e}", file=sys.stderr)
    return 2
  except TrainingDiverged as e:
    print(f"flatjax: error: {e}", file=sys.stderr)
    return 3
  except KeyboardInterrupt:
    return 130
  return 0


if __name__ == "__main__":
  sys.exit(main())
