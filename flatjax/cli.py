"""``flatjax train | eval``: the command line.

Bad input (an unknown task, a missing file, a malformed row, a bad flag value)
prints one line, ``flatjax: error: ...``, and exits with status 2, leaving
nothing in the output folder; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import sys

from flatjax.errors import FlatjaxInputError


def _positive_int(text: str) -> int:
  try:
    value = int(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
  if value <= 0:
    raise argparse.ArgumentTypeError(f"must be positive, got {value}")
  return value


def _positive_float(text: str) -> float:
  try:
    value = float(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
  if not value > 0:
    raise argparse.ArgumentTypeError(f"must be positive, got {value}")
  return value


def _key_value(text: str) -> tuple[str, float]:
  key, sep, value = text.partition("=")
  try:
    if not sep:
      raise ValueError
    return key.strip(), float(value)
  except ValueError:
    raise argparse.ArgumentTypeError(f"expected NAME=NUMBER, got {text!r}") from None


def _add_data_flags(p: argparse.ArgumentParser) -> None:
  p.add_argument("--task", required=True,
                 help="cola, sst2, mrpc, qqp, stsb, mnli, qnli, rte or squad")
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


def build_parser() -> argparse.ArgumentParser:
  from flatjax.optim import registry
  parser = argparse.ArgumentParser(
      prog="flatjax", description="Train flat, then compress: BERT fine-tuning in JAX.")
  sub = parser.add_subparsers(dest="command", required=True)

  train = sub.add_parser("train", help="fine-tune a BERT checkpoint on a task")
  _add_data_flags(train)
  train.add_argument("--model", default="minilm",
                     help="a model folder, a hub id, or 'minilm' (default)")
  train.add_argument("--optimizer", default="adam", help=f"one of {', '.join(registry.names())}")
  train.add_argument("--opt-arg", type=_key_value, action="append", default=[],
                     metavar="NAME=VALUE", help="optimizer-specific setting, e.g. rho=0.05")
  flat = train.add_argument_group("SAM and its variants (each optimizer's own defaults "
                                  "apply when a flag is not given)")
  flat.add_argument("--rho", type=_positive_float, default=None,
                    help="neighbourhood radius (sam, gsam, looksam: 0.05; asam: 0.5; gsam: "
                         "at the peak learning rate)")
  flat.add_argument("--eta", type=_positive_float, default=None, help="asam's offset (0.01)")
  flat.add_argument("--k", type=_positive_int, default=None,
                    help="looksam: an exact SAM gradient every K steps (5)")
  flat.add_argument("--alpha", type=float, default=None,
                    help="gsam: surrogate-gap ascent weight (0.1); looksam: weight of the "
                         "reused component (0.7)")
  flat.add_argument("--rho-min", type=float, default=None,
                    help="gsam: rho at learning rate 0 (0.0)")
  train.add_argument("--swa", default=None, metavar="RECIPE",
                     help="also average the weights (SWA) and evaluate the average: 'paper' "
                          "(end-of-epoch weights of the second half of the run), FRACTION "
                          "(every epoch from that fraction of the run) or FRACTION:STEPS")
  train.add_argument("--epochs", type=_positive_float, default=3.0)
  train.add_argument("--batch-size", type=_positive_int, default=32)
  train.add_argument("--lr", type=_positive_float, default=2e-5)
  train.add_argument("--weight-decay", type=float, default=0.0)
  train.add_argument("--warmup-steps", type=int, default=0)
  train.add_argument("--clip-norm", type=_positive_float, default=None)
  train.add_argument("--max-train-examples", type=_positive_int, default=None)
  train.add_argument("--eval-every", type=_positive_int, default=None,
                     help="evaluate every N steps (default: every epoch)")
  train.add_argument("--save-every", type=_positive_int, default=None,
                     help="also checkpoint every N steps")
  train.add_argument("--log-every", type=_positive_int, default=20)
  train.add_argument("--no-keep-best", action="store_true",
                     help="do not save the best-on-validation model")
  train.add_argument("--stop-after-steps", type=_positive_int, default=None,
                     help="stop (checkpointed) after N steps; continue later with --resume")
  train.add_argument("--output", required=True, help="run folder")
  train.add_argument("--resume", action="store_true",
                     help="continue the run in --output from its last checkpoint")

  ev = sub.add_parser("eval", help="evaluate a model folder (e.g. RUN/best) on a task")
  _add_data_flags(ev)
  ev.add_argument("--model", required=True, help="a model folder, hub id or 'minilm'")
  ev.add_argument("--output", default=None, help="write the metrics JSON here too")
  return parser


def _max_length(args, task) -> int:
  """``--max-length``, else the paper's: 128 for GLUE, 384 for SQuAD."""
  return args.max_length or (384 if task.kind == "span" else 128)


def _optimizer_args(args) -> dict[str, float]:
  """``--opt-arg`` settings, overridden by the named flags that were given."""
  settings = dict(args.opt_arg)
  for name in ("rho", "eta", "k", "alpha", "rho_min"):
    if getattr(args, name) is not None:
      settings[name] = float(getattr(args, name))
  return settings


def _train(args) -> None:
  from flatjax.data.tasks import get_task
  from flatjax.train.loop import TrainConfig, fit
  task = get_task(args.task)
  config = TrainConfig(
      task=task.name, output=args.output, model=args.model, data=args.data,
      eval_data=args.eval_data, optimizer=args.optimizer, epochs=args.epochs,
      batch_size=args.batch_size, eval_batch_size=args.eval_batch_size,
      max_length=_max_length(args, task),
      doc_stride=args.doc_stride, lr=args.lr, weight_decay=args.weight_decay,
      warmup_steps=args.warmup_steps, clip_norm=args.clip_norm,
      optimizer_args=_optimizer_args(args), swa=args.swa, seed=args.seed,
      max_train_examples=args.max_train_examples, max_eval_examples=args.max_eval_examples,
      eval_every=args.eval_every, save_every=args.save_every, log_every=args.log_every,
      keep_best=not args.no_keep_best, dtype=args.dtype, pad_to=args.pad_to,
      stop_after_steps=args.stop_after_steps, progress=not args.no_progress)
  results = fit(config, resume=args.resume)
  print(json.dumps(results, indent=2))


def _eval(args) -> None:
  from pathlib import Path
  from flatjax.data.tasks import get_task
  from flatjax.train import evaluation
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


def main(argv: list[str] | None = None) -> int:
  parser = build_parser()
  args = parser.parse_args(argv)  # argparse itself exits 2 on bad flags
  _enable_compilation_cache()
  try:
    {"train": _train, "eval": _eval}[args.command](args)
  except FlatjaxInputError as e:
    print(f"flatjax: error: {e}", file=sys.stderr)
    return 2
  except KeyboardInterrupt:
    return 130
  return 0


if __name__ == "__main__":
  sys.exit(main())
