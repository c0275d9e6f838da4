"""The command line: ``flatjax train | eval | imp | compare | tickets | oneshot | cofi |
sharpness | quantize | export``.

Each command's settings are the fields of its typed configuration (the
dataclasses of :mod:`flatjax.recipes` and their sections); jsonargparse derives
the flags and their help from them. A setting is a dotted key
(``--optimizer.learning_rate 1e-4``), a short form of one (``--lr 1e-4``,
:mod:`flatjax.flags`), or an entry of a YAML or JSON file given with
``--config FILE`` (flags after it win). ``--print_config`` shows the resolved
settings; every run also writes them to its ``run.json``.

Bad input (an unknown task, a missing file, a malformed row, a bad flag value)
prints one line, ``flatjax: error: ...``, and exits with status 2, leaving
nothing in the output folder; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import functools
import json
import re
import sys
from pathlib import Path
from typing import Any, Callable

from jsonargparse import ActionConfigFile, ArgumentParser, set_parsing_settings

from flatjax import flags, provenance
from flatjax.errors import FlatjaxInputError, TrainingDiverged
from flatjax.runtime import tune_malloc

# Short forms every fine-tuning command shares whose names differ from their keys.
_TRAIN_RENAMED = {"--data": "data.source", "--eval-data": "data.eval_source",
                  "--model": "model.name", "--optimizer": "optimizer.name",
                  "--lr": "optimizer.learning_rate"}


@dataclasses.dataclass(frozen=True)
class Command:
  """A subcommand: its sections (``(key, dataclass, fields left out)``; key None:
  the fields at the top), positional arguments, plain settings and its runner."""
  help: str
  run: Callable[[dict], None]
  sections: tuple[tuple[str | None, type, frozenset], ...] = ()
  positional: tuple[tuple[str, str], ...] = ()
  plain: tuple[tuple[str, Any, Any, str], ...] = ()   # (name, type, default, help)
  renamed: dict[str, str] = dataclasses.field(default_factory=dict)
  own: str | None = None
  # preset name -> (task or None -> its dotted keys); the first is the default.
  presets: dict[str, Callable[[str | None], dict[str, Any]]] = dataclasses.field(
      default_factory=dict)
  defaults: dict[str, Any] = dataclasses.field(default_factory=dict)  # over the dataclasses'

  def short_forms(self) -> flags.ShortForms:
    from flatjax.optim import registry
    keys: dict[str, str] = {}
    for key, cls, skip in self.sections:
      keys.update(flags.section_keys(cls, key, skip))
    keys.update({name: flags.kind_of(kind) for name, kind, _, _ in self.plain})
    return flags.ShortForms(keys, self.renamed, self.own, tuple(registry.setting_names()))

  def parser(self) -> ArgumentParser:
    p = ArgumentParser(description=self.help, exit_on_error=False, epilog=self.epilog())
    p.add_argument("--config", action=ActionConfigFile,
                   help="a YAML or JSON file of settings (flags after it win)")
    for name, text in self.positional:
      p.add_argument(name, help=text)
    for key, cls, skip in self.sections:
      p.add_class_arguments(cls, key, skip=set(skip), instantiate=False)
    for name, kind, default, text in self.plain:
      p.add_argument(f"--{name}", type=kind, default=default, help=text)
    if self.defaults:
      p.set_defaults(self.defaults)
    return p

  def epilog(self) -> str:
    renamed = ", ".join(f"{flag} = --{key}" for flag, key in self.renamed.items())
    return ("Short forms: a key's last part with dashes (--batch-size for --run.batch_size) "
            "where only one key ends so; --no-X sets a boolean X false"
            + ("; the optimizer's settings as --NAME VALUE (--rho 0.1) or --opt-arg NAME=VALUE"
               if any(key == "optimizer" for key, _, _ in self.sections) else "")
            + (f"; {renamed}" if renamed else "") + ".")

  def expand(self, argv: list[str]) -> list[str]:
    """``argv`` in dotted keys, a ``--preset``'s settings first (later flags win)."""
    front = []
    if self.presets:
      name = _last_value(argv, "--preset") or next(iter(self.presets))
      if name not in self.presets:
        raise FlatjaxInputError(f"unknown preset {name!r}; known: {', '.join(self.presets)}")
      task = _last_value(argv, "--task", "--data.task")
      front = [f"--{key}={value if isinstance(value, str) else json.dumps(value)}"
               for key, value in self.presets[name](task).items()]
    return front + flags.expand(argv, self.short_forms(),
                                frozenset({"--config", "--print_config", "--help", "-h"}))


def _last_value(argv: list[str], *names: str) -> str | None:
  """The value of the last of ``names`` in ``argv`` (``--name V`` or ``--name=V``)."""
  found = None
  for i, arg in enumerate(argv):
    name, eq, value = arg.partition("=")
    if name in names:
      found = value if eq else (argv[i + 1] if i + 1 < len(argv) else None)
  return found


def _train_sections(*, optimizer_name: bool = True, pruning: bool = True):
  from flatjax.data.config import DataConfig
  from flatjax.models.config import ModelConfig
  from flatjax.optim.registry import OptimizerConfig
  from flatjax.sparsity.config import PruningConfig
  from flatjax.train.config import RunConfig
  return ((("data", DataConfig, frozenset()), ("model", ModelConfig, frozenset()),
           ("optimizer", OptimizerConfig, frozenset() if optimizer_name else {"name"}))
          + ((("pruning", PruningConfig, frozenset()),) if pruning else ())
          + (("run", RunConfig, frozenset()),))


def _compare_preset(name: str, task: str | None) -> dict[str, Any]:
  from flatjax.recipes import compare
  return {(k[len("train."):] if k.startswith("train.") else f"compare.{k}"): v
          for k, v in compare.preset(name, task).items()}


def _train_config(values: dict):
  """The TrainConfig of a fine-tuning command's parsed sections."""
  from flatjax.recipes.finetune import TrainConfig
  return TrainConfig.from_dict(values)


def _distinct(names, what: str) -> tuple[str, ...]:
  if len(set(names)) != len(names):
    raise FlatjaxInputError(f"{what} given twice: {' '.join(names)}")
  return tuple(names)


def _train(values: dict) -> None:
  from flatjax.recipes.finetune import fit
  config = _train_config(values)
  if config.pruning.mask is not None:
    from flatjax.recipes.tickets import resolve_mask
    config = config.replace(pruning={"mask": str(resolve_mask(config.pruning.mask))})
  print(json.dumps(fit(config, resume=values["resume"]), indent=2))


def _imp(values: dict) -> None:
  from flatjax.console import say
  from flatjax.optim import registry
  from flatjax.recipes import imp, plots
  train = _train_config(values)
  out = Path(train.run.output)
  configs = {opt: imp.IMPConfig(
      train=dataclasses.replace(train.replace(run={"output": str(out / opt)}),
                                optimizer=registry.switched(train.optimizer, opt)),
      stop_after_steps=train.run.stop_after_steps, **values["imp"])
      for opt in _distinct(values["optimizers"], "optimizer")}
  for config in configs.values():  # every setting checked before the first round runs
    config.validate()
  reports = {}
  for opt, config in configs.items():
    run = Path(config.train.run.output)
    reports[opt] = imp.run_imp(config, resume=values["resume"] and (run / "imp.json").exists())
    if not reports[opt]["finished"]:
      say(f"stopped in the {opt} run; continue with --resume")
      print(json.dumps(reports, indent=2))
      return
  mode = values["imp"]["mode"]
  curves = {f"{opt} ({mode})": imp.read_rounds(out / opt) for opt in configs}
  plots.plot_sparsity_curves(curves, out / "imp.png", title=f"{train.data.task}: IMP ({mode})")
  table = imp.summary_table(curves)
  (out / "summary.md").write_text(table + "\n")
  print(table)


def _compare(values: dict) -> None:
  from flatjax.recipes import compare
  train = _train_config(values)
  if not train.run.output:
    train = train.replace(run={"output": f"runs/compare-{train.data.task}"})
  settings = dict(values["compare"])
  settings["optimizers"] = _distinct(settings["optimizers"], "optimizer")
  results = compare.run_compare(compare.CompareConfig(train=train, **settings),
                                resume=values["resume"])
  if results["finished"]:
    print((Path(train.run.output) / "summary.md").read_text())


def _tickets(values: dict) -> None:
  from flatjax.recipes import tickets
  train = _train_config(values)
  settings = dict(values["tickets"])
  settings["masks"] = {label: str(tickets.resolve_mask(path, values["sparsity"]))
                       for label, path in settings["masks"].items()}
  settings["optimizers"] = _distinct(settings["optimizers"], "optimizer")
  config = tickets.TicketsConfig(train=train, random_seed=train.run.seed, **settings)
  print(tickets.grid_table(tickets.run_tickets(config, resume=values["resume"])))


def _oneshot(values: dict) -> None:
  from flatjax.console import say
  from flatjax.recipes import oneshot
  c = oneshot.OneshotConfig(**values["oneshot"])
  base = _train_config({**values, "run": {"output": c.output, "seed": c.seed,
                                          "eval_batch_size": c.eval_batch_size,
                                          "progress": c.progress}})
  base.validate()
  oneshot.run_oneshot(base, c.models, c.output, step=c.step, maximum=c.maximum,
                      scope=c.scope, granularity=c.granularity, method=c.method, log=say)
  print((Path(c.output) / "oneshot.md").read_text())


def _cofi(values: dict) -> None:
  from flatjax.recipes import cofi
  config = cofi.CofiConfig(**{k: v for k, v in values.items() if k != "resume"})
  print(json.dumps(cofi.run_cofi(config, resume=values["resume"]), indent=2))


def _sharpness(values: dict) -> None:
  from flatjax.recipes import sharpness as runner
  results = runner.run_sharpness(runner.SharpnessConfig(**values))
  summary = {"loss": results["loss"],
             "epsilon_sharpness": {f"{r['epsilon']:g}": r["sharpness"] for r in results["keskar"]}}
  for name in ("hessian_top_eigenvalue", "hessian_trace"):
    if name in results:
      summary[name] = results[name]["eigenvalue" if name.endswith("eigenvalue") else "trace"]
  print(json.dumps(summary, indent=2))


def _quantize(values: dict) -> None:
  from flatjax.recipes import quantize as runner
  results = runner.run_quantize(runner.QuantizeConfig(**values))
  summary = {"float32": results["float32"],
             "int8": {name: {"metrics": r["metrics"], "file_ratio": r["sizes"]["ratio"]}
                      for name, r in results["int8"].items()}}
  print(json.dumps(summary, indent=2))


def _export(values: dict) -> None:
  from flatjax.recipes import export as runner
  print(json.dumps(runner.run_export(runner.ExportConfig(**values)), indent=2))


def _eval(values: dict) -> None:
  from flatjax.data.config import DataConfig
  from flatjax.data.tasks import get_task
  from flatjax.models.config import ModelConfig
  from flatjax.recipes import evaluate as evaluation
  data, model = DataConfig(**values["data"]), ModelConfig(**values["model"])
  data.validate()
  model.validate()
  output = values["output"]
  if output is not None and Path(output).exists():
    raise FlatjaxInputError(f"--output {output} already exists")
  scores = evaluation.evaluate_model(
      model.name, get_task(data.task), data.eval_data(), max_length=data.max_length,
      batch_size=values["eval_batch_size"], max_examples=data.max_eval_examples,
      seed=values["seed"], doc_stride=data.doc_stride, dtype=model.dtype, pad_to=data.pad_to)
  text = json.dumps(scores, indent=2)
  print(text)
  if output is not None:
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    Path(output).write_text(text + "\n")


_RESUME = ("resume", bool, False, "continue the run in the output folder")
# The file system's faults that are the user's to fix: a full disk or quota, a
# read-only or forbidden place.
_USER_OS_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


def commands() -> dict[str, Command]:
  """Every subcommand, by name."""
  return {**_fine_tuning_commands(), **_model_commands()}


def _fine_tuning_commands() -> dict[str, Command]:
  """The commands that fine-tune: their settings are a TrainConfig's sections and more."""
  from flatjax.recipes import compare, imp, tickets
  return {
      "train": Command(
          "fine-tune a BERT checkpoint on a task", _train, _train_sections(),
          plain=(_RESUME,), renamed={**_TRAIN_RENAMED, "--pruning": "pruning.method",
                                     **{f"--pruning-{k}": f"pruning.{k}" for k in
                                        ("begin", "end", "every", "granularity", "scope")}}),
      "imp": Command(
          "iterative magnitude pruning during fine-tuning (Chen et al. 2020): rounds of "
          "train, prune, rewind; one IMP run per optimizer in OUTPUT/OPTIMIZER", _imp,
          _train_sections(optimizer_name=False, pruning=False)
          + (("imp", imp.IMPConfig, frozenset({"train", "stop_after_steps"})),),
          plain=(("optimizers", tuple[str, ...], ("adam", "sam"), "the optimizers compared"),
                 _RESUME), renamed={**_TRAIN_RENAMED, "--optimizer": "optimizers"}, own="imp"),
      "compare": Command(
          "train flat, then compress: fine-tune with each optimizer, then IMP, one-shot "
          "pruning and int8 of each, in one table", _compare,
          _train_sections(optimizer_name=False, pruning=False)
          + (("compare", compare.CompareConfig, frozenset({"train"})),),
          plain=(("preset", str, "cpu", "cpu: MiniLM on a subset sized for the task "
                  "(640 training examples; SST-2 1,000, MRPC 2,560 at length 64, ...), 2 "
                  "epochs, lr 1e-4, IMP in 2 rounds, scope encoder; full: the paper's "
                  "bert-base, all data, 3 epochs, lr 2e-5, IMP 10%% per round, scope bert. "
                  "Settings given win"), _RESUME),
          renamed={**_TRAIN_RENAMED, "--optimizer": "compare.optimizers"}, own="compare",
          defaults={"run.output": ""},  # "": runs/compare-TASK
          presets={name: functools.partial(_compare_preset, name) for name in compare.PRESETS}),
      "tickets": Command(
          "fine-tune the pre-trained weights under given masks with each optimizer (Table 6, "
          "transfer)", _tickets,
          _train_sections(optimizer_name=False, pruning=False)
          + (("tickets", tickets.TicketsConfig, frozenset({"train", "random_seed"})),),
          plain=(("sparsity", float | None, None,
                  "which round's mask to take from IMP run folders"), _RESUME),
          renamed={**_TRAIN_RENAMED, "--optimizer": "tickets.optimizers",
                   "--mask": "tickets.masks"}, own="tickets"),
  }


def _model_commands() -> dict[str, Command]:
  """The commands that read trained models (and CoFi, which distils one)."""
  from flatjax.data.config import DataConfig
  from flatjax.models.config import ModelConfig
  from flatjax.recipes import cofi, export, oneshot, quantize, sharpness
  none = frozenset()
  return {
      "oneshot": Command(
          "prune fine-tuned models by magnitude in steps, without retraining, and evaluate "
          "each step", _oneshot,
          (("data", DataConfig, none), ("model", ModelConfig, frozenset({"name"})),
           ("oneshot", oneshot.OneshotConfig, none)),
          renamed={"--data": "data.source", "--eval-data": "data.eval_source",
                   "--model": "oneshot.models", "--max": "oneshot.maximum"}, own="oneshot"),
      "cofi": Command(
          "CoFi structured pruning with distillation from a fine-tuned teacher, exported as a "
          "smaller dense BERT", _cofi, ((None, cofi.CofiConfig, none),), plain=(_RESUME,),
          renamed={"--train-embeddings": "freeze_embeddings=false"}),
      "sharpness": Command(
          "flatness of a fine-tuned model: Keskar epsilon-sharpness, Hessian top eigenvalue "
          "and trace, loss surfaces", _sharpness,
          ((None, sharpness.SharpnessConfig, frozenset({"run"})),),
          positional=(("run", "a flatjax train run folder (its best/ model) or a model "
                       "folder"),), renamed={"--epsilon": "epsilons"}),
      "quantize": Command(
          "int8 post-training quantization of a fine-tuned model: dev metrics in float32 and "
          "int8, int8 model folder, file sizes", _quantize,
          ((None, quantize.QuantizeConfig, frozenset({"run"})),),
          positional=(("run", "a flatjax train run folder (its best/ model) or a model "
                       "folder"),), renamed={"--scheme": "schemes"}),
      "export": Command(
          "export a fine-tuned, pruned, int8 or CoFi model as an ONNX file that runs without "
          "JAX (onnxruntime)", _export, ((None, export.ExportConfig, frozenset({"run"})),),
          positional=(("run", "a flatjax train run folder (its best/ model), a CoFi run "
                       "folder, an int8 model folder or a model folder"),)),
      "eval": Command(
          "evaluate a model folder (e.g. RUN/best, or an int8 folder from flatjax quantize) "
          "on a task", _eval,
          (("data", DataConfig, none), ("model", ModelConfig, none)),
          plain=(("eval_batch_size", int, 64, "examples per batch"),
                 ("seed", int, 0, "seeds the max_eval_examples subset"),
                 ("output", str | None, None, "write the metrics JSON here too")),
          renamed={"--data": "data.source", "--eval-data": "data.eval_source",
                   "--model": "model.name"}),
  }


def build_parser(table: dict[str, Command] | None = None) -> ArgumentParser:
  table = table or commands()
  # Each field's help is the docstring under it in its dataclass.
  set_parsing_settings(docstring_parse_attribute_docstrings=True)
  parser = ArgumentParser(prog="flatjax", exit_on_error=False,
                          description="Train flat, then compress: BERT fine-tuning in JAX.")
  sub = parser.add_subcommands(dest="command")
  for name, command in table.items():
    sub.add_subcommand(name, command.parser(), help=command.help)
  return parser


def parse(argv: list[str], table: dict[str, Command] | None = None) -> tuple[str, dict]:
  """``(command, settings)`` of a command line; bad input raises FlatjaxInputError."""
  table = table or commands()
  if argv and argv[0] in table:
    argv = [argv[0], *table[argv[0]].expand(argv[1:])]
  try:
    ns = build_parser(table).parse_args(argv)
  except argparse.ArgumentError as e:
    message = _one_line(str(e))
    if argv and argv[0] in table:  # "train.data.task": the key is "data.task"
      message = re.sub(rf"(?<![\w.]){argv[0]}\.", "", message)
    raise FlatjaxInputError(message) from None
  values = ns[ns.command].as_dict()
  for key in ("config", "__path__", "preset"):
    values.pop(key, None)
  return ns.command, values


def _one_line(message: str) -> str:
  """jsonargparse's several-line messages as one: the key, what it expected, the value."""
  lines = [line.strip(" -") for line in message.splitlines() if line.strip()]
  given = [line for line in lines if line.startswith(("Given value:", "Got value"))]
  keep = lines[:2] + [line for line in given if line not in lines[:2]]
  return " ".join(keep).replace('Parser key "', 'setting "')


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


def main(argv: list[str] | None = None) -> int:
  argv = sys.argv[1:] if argv is None else list(argv)
  table = commands()
  try:
    command, values = parse(argv, table)
  except FlatjaxInputError as e:
    print(f"flatjax: error: {e}", file=sys.stderr)
    return 2
  # Before JAX starts its threads: XLA:CPU's per-step scratch buffer is then
  # reused instead of page-faulted in afresh every step (flatjax.runtime).
  tune_malloc()
  _enable_compilation_cache()
  try:
    _join_distributed()
    with provenance.command(["flatjax", *argv]):
      table[command].run(values)
  except FlatjaxInputError as e:
    print(f"flatjax: error: {e}", file=sys.stderr)
    return 2
  except TrainingDiverged as e:
    print(f"flatjax: error: {e}", file=sys.stderr)
    return 3
  except OSError as e:
    if e.errno not in _USER_OS_ERRORS:
      raise
    print(f"flatjax: error: {e.strerror}: {e.filename} (what was written before stays; "
          "--resume continues once it is fixed)", file=sys.stderr)
    return 2
  except KeyboardInterrupt:
    return 130
  return 0


if __name__ == "__main__":
  sys.exit(main())
