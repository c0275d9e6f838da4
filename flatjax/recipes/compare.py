"""``flatjax compare --task TASK``: train flat, then compress, in one command.

For each optimizer (Adam and SAM by default) it fine-tunes the model, then
compresses the fine-tuned model three ways, each the paper's recipe:

* iterative magnitude pruning (Chen et al. 2020; the paper's Tables 1 and 5)
  to the task's reference sparsity (its ``TaskSpec.reference_sparsity``)
  in ``imp_rounds`` equal rounds, rewinding to the pre-trained weights; its
  round 0 *is* the fine-tuning, so every later step starts from that model;
* one-shot global magnitude pruning of the fine-tuned model, no retraining,
  from 0 to the same sparsity;
* int8 post-training dynamic quantization (PyTorch's recipe; Table 8).

It writes, into the output folder::

  compare.json        the settings
  OPT/imp/            the IMP run (round_00 is the fine-tuned model)
  OPT/oneshot/        the one-shot curve
  OPT/int8/           quantize.json
  results.json        every number of the table below, and the main dev split's
                      labels and each model's predictions (digit strings; SQuAD:
                      each question's F1)
  summary.md          dev metric before / after each compression, per optimizer
  compare.png         the same as bars, and the sparsity curves

Each stage is resumable (``resume=True`` continues IMP where it stopped and
skips finished stages). :data:`PRESETS` size a run: ``cpu`` for about 15
minutes on MiniLM here, ``full`` for the paper's bert-base recipe on an
accelerator.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

from flatjax import figures, files, jsonl, provenance
from flatjax.console import say
from flatjax.data.tasks import get_task
from flatjax.errors import FlatjaxInputError
from flatjax.optim import registry
from flatjax.quant import int8
from flatjax.recipes import finetune, imp, oneshot
from flatjax.recipes import quantize as quant_runner
from flatjax.sparsity import masks, methods
from flatjax.train.evaluation import saved_predictions
from flatjax.train.trainer import check_driver_folder

# Each preset's settings, as dotted keys of CompareConfig (settings given win).
PRESETS: dict[str, dict[str, Any]] = {
    # MiniLM on a seeded subset (the task's CPU_SUBSETS), 2 epochs per fine-tuning run,
    # IMP in 2 rounds. About 8-20 minutes per task on a 2-core CPU (SAM steps cost 2x).
    "cpu": {"train.model.name": "minilm", "train.run.epochs": 2.0,
            "train.optimizer.learning_rate": 1e-4, "train.run.batch_size": 32,
            "train.data.max_length": 128, "train.data.max_train_examples": 640,
            "train.optimizer.warmup_steps": 0, "imp_rounds": 2, "scope": "encoder"},
    # The paper's: bert-base, all the data, 3 epochs at 2e-5, IMP 10% per round, Chen et
    # al.'s scope (encoder kernels and pooler). The cpu preset leaves MiniLM's pooler out:
    # it was never trained (a sentence-embedding model), its weights are the smallest, and
    # global ranking empties it first (IMP warns when a sparsity prunes all of a tensor).
    "full": {"train.model.name": "bert-base-uncased", "train.run.epochs": 3.0,
             "train.optimizer.learning_rate": 2e-5, "train.run.batch_size": 32,
             "train.data.max_length": 128, "train.data.max_train_examples": None,
             "train.optimizer.warmup_steps": 0, "imp_rounds": None, "scope": "bert"},
}


# The cpu preset's subsets, by task (the defaults above for the others): what a 2-core CPU
# learns from in minutes. SST-2's short sentences allow 1,000; QNLI's, MNLI's and QQP's pairs
# fit max length 64, which buys twice the examples per step-second, and their large dev sets
# are sampled; MRPC's pairs (median 54 tokens) reach 75.7% with 2,560 at length 64 where 640
# and 1,280 at 128 stayed near the majority label; SQuAD's questions are windowed at 192
# with stride 64 (each makes several windows, each scored ~30 times in a run).
CPU_SUBSETS: dict[str, dict[str, Any]] = {
    "sst2": {"train.data.max_train_examples": 1000},
    "mrpc": {"train.data.max_train_examples": 2560, "train.data.max_length": 64},
    **{task: {"train.data.max_train_examples": 1280, "train.data.max_length": 64,
              "train.data.max_eval_examples": 500} for task in ("qnli", "mnli", "qqp")},
    "squad": {"train.data.max_train_examples": 400, "train.data.max_length": 192,
              "train.data.doc_stride": 64, "train.data.max_eval_examples": 200},
}


def preset(name: str, task: str | None) -> dict[str, Any]:
  """Preset ``name``'s settings for ``task`` (dotted CompareConfig keys); KeyError if unknown."""
  return {**PRESETS[name], **(CPU_SUBSETS.get(task, {}) if name == "cpu" else {})}


@dataclasses.dataclass
class CompareConfig:
  """A ``flatjax compare`` run. ``train`` is the fine-tuning recipe
  (``flatjax.recipes.finetune.TrainConfig``; its ``output`` is the compare folder,
  its ``optimizer`` is replaced by each of ``optimizers``)."""
  train: finetune.TrainConfig
  optimizers: tuple[str, ...] = ("adam", "sam")
  """the optimizers compared, one fine-tuning, IMP, one-shot and int8 run each"""
  sparsity: float | None = None
  """IMP and one-shot target (null: the task's reference sparsity, e.g. RTE 0.6)"""
  imp_rounds: int | None = 2
  """IMP rounds to reach the sparsity (null: 0.1 of the weights a round, the paper's)"""
  oneshot_step: float = 0.1
  """one-shot curve step (0.1)"""
  scope: str = "bert"
  """prunable params: a scope name (bert: Chen et al.'s encoder kernels and the pooler; encoder)
  or a regex on param paths"""
  granularity: str = "global"
  """rank scores over the whole scope (global), within each tensor (per_tensor), or keep N of
  every M inputs of each kernel (N:M, e.g. 2:4 at sparsity 0.5)"""
  method: str = "magnitude"
  """the scores IMP and one-shot prune by: magnitude, random, or a registered method needing no
  training"""
  quant_scheme: str = "dynamic"
  """the int8 recipe (dynamic: PyTorch's quantize_dynamic on every Linear)"""
  quant_batch_size: int = 32
  """int8 evaluation batch size (32)"""

  def target_sparsity(self) -> float:
    if self.sparsity is not None:
      return self.sparsity
    task = get_task(self.train.data.task)
    if task.reference_sparsity is None:
      raise FlatjaxInputError(f"{task.name} has no reference sparsity; pass --sparsity")
    return task.reference_sparsity

  def rounds(self) -> int:
    s = self.target_sparsity()
    return self.imp_rounds if self.imp_rounds is not None else max(1, round(s / 0.1))

  def validate(self) -> None:
    for name in self.optimizers:
      train_config_for(self, name).validate()
    if self.train.pruning.mask is not None or self.train.pruning.method is not None:
      raise FlatjaxInputError("compare fine-tunes dense models; no --mask or --pruning")
    if not self.optimizers or len(set(self.optimizers)) != len(self.optimizers):
      raise FlatjaxInputError(f"give distinct optimizers, got {list(self.optimizers)}")
    for name in self.optimizers:
      if name not in registry.names():
        raise FlatjaxInputError(f"unknown optimizer {name!r}; known: {registry.names()}")
    s = self.target_sparsity()
    if not 0.0 < s < 1.0:
      raise FlatjaxInputError(f"sparsity must be in (0, 1), got {s}")
    if self.imp_rounds is not None and self.imp_rounds < 1:
      raise FlatjaxInputError(f"imp-rounds must be positive, got {self.imp_rounds}")
    if not 0.0 < self.oneshot_step <= s:
      raise FlatjaxInputError(f"oneshot-step must be in (0, sparsity], got {self.oneshot_step}")
    int8.get_config(self.quant_scheme)
    rounds = self.rounds()                         # IMP's rounds and the one-shot curve's
    masks.check_granularity(self.granularity, [s * k / rounds for k in range(1, rounds + 1)]
                            + oneshot.sparsity_grid(self.oneshot_step, s))
    methods.untrained_scoring(self.method)
    if self.quant_batch_size < 1:
      raise FlatjaxInputError("the quantization batch size must be positive")
    taken = set().union(*(registry.settings(o) for o in self.optimizers))
    unused = sorted(set(self.train.optimizer.settings) - taken)
    if unused:
      raise FlatjaxInputError(f"no optimizer of this comparison ({', '.join(self.optimizers)}) "
                              f"takes {', '.join(unused)}")

  def to_json(self) -> dict:
    d = dataclasses.asdict(self)
    d["optimizers"] = list(self.optimizers)
    d["target_sparsity"] = self.target_sparsity()
    d["rounds"] = self.rounds()
    for k in ("progress", "stop_after_steps"):
      d["train"]["run"].pop(k, None)
    return d


def train_config_for(config: CompareConfig, optimizer: str):
  """The run's TrainConfig for ``optimizer``, with only the optimizer settings it takes:
  ``--rho 0.02`` sets SAM's radius and leaves Adam as it is."""
  return dataclasses.replace(config.train,
                             optimizer=registry.switched(config.train.optimizer, optimizer))


def _imp_config(config: CompareConfig, out: Path, optimizer: str):
  rounds = config.rounds()
  train = train_config_for(config, optimizer).replace(
      run={"output": str(out / optimizer / "imp")})
  return imp.IMPConfig(train=train, mode="imp", rate=config.target_sparsity() / rounds,
                       rounds=rounds, granularity=config.granularity, scope=config.scope,
                       method=config.method)


def _quantize(config: CompareConfig, optimizer: str, fine_tuned: Path, out: Path, log) -> dict:
  """int8 scores of the fine-tuned model (read back when already computed)."""
  if (out / "quantize.json").exists():
    return json.loads((out / "quantize.json").read_text())
  log(f"{optimizer}: int8 quantization ({config.quant_scheme})")
  data = config.train.data
  return quant_runner.run_quantize(quant_runner.QuantizeConfig(
      run=str(fine_tuned), output=str(out), schemes=(config.quant_scheme,),
      data=data.eval_data(), batch_size=config.quant_batch_size,
      max_length=data.max_length, max_eval_examples=data.max_eval_examples,
      doc_stride=data.doc_stride, pad_to=data.pad_to, seed=config.train.run.seed,
      save=False, progress=config.train.run.progress))


def run_compare(config: CompareConfig, resume: bool = False, log=None) -> dict:
  """Runs (or resumes) the comparison; returns (and writes) its results."""
  log = log or say
  config.validate()
  out = Path(config.train.run.output)
  settings = config.to_json()
  resumed = check_driver_folder(out, "compare.json", settings, resume, "a compare run")
  if not resumed:
    out.mkdir(parents=True, exist_ok=True)
    files.write_json(out / "compare.json", settings)
  provenance.write_run_json(out, settings, config.train.data_sources(), resumed=resumed)
  target = config.target_sparsity()
  results: dict[str, Any] = {"task": config.train.data.task, "sparsity": target, "optimizers": {}}
  for optimizer in config.optimizers:
    imp_config = _imp_config(config, out, optimizer)
    imp_config.stop_after_steps = config.train.run.stop_after_steps
    log(f"{optimizer}: fine-tuning, then IMP to {target:.0%} in {imp_config.rounds} rounds")
    imp_run = Path(imp_config.train.run.output)
    report = imp.run_imp(imp_config, resume=(imp_run / "imp.json").exists(), log=log)
    if not report["finished"]:
      log(f"stopped in the {optimizer} run; continue with --resume")
      return {"finished": False, "optimizer": optimizer}
    rounds = imp.read_rounds(imp_run)
    fine_tuned = imp.round_dir(imp_run, 0)

    log(f"{optimizer}: one-shot {config.method} pruning of the fine-tuned model")
    curve = oneshot.run_oneshot(
        train_config_for(config, optimizer),
        {optimizer: str(fine_tuned / "best")}, out / optimizer / "oneshot",
        step=config.oneshot_step, maximum=target, scope=config.scope,
        granularity=config.granularity, method=config.method, log=log)[optimizer]

    quant = _quantize(config, optimizer, fine_tuned, out / optimizer / "int8", log)
    results["optimizers"][optimizer] = _summary(rounds, curve, quant, config.quant_scheme,
                                                target)
    results["optimizers"][optimizer]["predictions"] = _predictions(
        imp_run, rounds, curve, quant, config.quant_scheme, target)
  files.write_json(out / "results.json", results)
  table = summary_table(results)
  (out / "summary.md").write_text(table + "\n")
  plot_compare(results, {o: imp.read_rounds(out / o / "imp") for o in config.optimizers},
               {o: jsonl.read(out / o / "oneshot" / "oneshot.jsonl") for o in config.optimizers},
               out / "compare.png")
  return {"finished": True, **results}


def _summary(rounds: list[dict], curve: list[dict], quant: dict, scheme: str,
             target: float) -> dict:
  """The table's numbers for one optimizer: the task's main dev metric of the
  fine-tuned model (best evaluation of IMP round 0, the paper's protocol) and
  after each compression."""
  full = next(r for r in rounds if r["round"] == 0)
  at_target = next(r for r in rounds if math.isclose(r["target_sparsity"], target))
  oneshot_row = next(r for r in curve if math.isclose(r["target_sparsity"], target))
  dense = next(r for r in curve if r["target_sparsity"] == 0)
  split, metric = full["metric_name"].split("/", 1)
  return {
      "metric": full["metric_name"],
      "full": full["metric"],
      "imp": at_target["metric"], "imp_sparsity": at_target["sparsity"],
      "oneshot": oneshot_row["metric"], "oneshot_sparsity": oneshot_row["sparsity"],
      "oneshot_dense": dense["metric"],
      "int8": quant["int8"][scheme]["metrics"][split][metric],
      "int8_float32": quant["float32"][split][metric],
      "int8_file_ratio": quant["int8"][scheme]["sizes"]["ratio"]}


def _predictions(imp_run: Path, rounds: list[dict], curve: list[dict], quant: dict,
                 scheme: str, target: float) -> dict | None:
  """The main dev split's labels and each model's predictions (``SplitData.per_example``:
  digit strings, or SQuAD's per-question F1 without labels), for a paired comparison
  example by example; None for regression or models saved before they were kept."""
  split = rounds[0]["metric_name"].split("/", 1)[0]
  at_target = next(r for r in rounds if math.isclose(r["target_sparsity"], target))

  saved = lambda round_: saved_predictions(imp.round_dir(imp_run, round_) / "best", split)
  oneshot_row = next(r for r in curve if math.isclose(r["target_sparsity"], target))
  found = {"full": saved(0), "imp": saved(at_target["round"]),
           "oneshot": oneshot_row.get("predictions", {}).get(split),
           "int8": quant["int8"][scheme].get("predictions", {}).get(split),
           "int8_float32": quant.get("float32_predictions", {}).get(split)}
  if any(v is None for v in found.values()):
    return None
  return {"labels": found["full"]["labels"],
          **{k: v["predictions"] for k, v in found.items()}}


def summary_table(results: dict) -> str:
  """Markdown: per optimizer, the dev metric before and after each compression."""
  s = results["sparsity"]
  rows = results["optimizers"]
  metric = next(iter(rows.values()))["metric"] if rows else "metric"
  lines = [f"{results['task']}, dev {metric}: the fine-tuned model, then each compression "
           "of it (change in brackets).", "",
           f"| optimizer | fine-tuned | IMP {s:.0%} (retrained) | one-shot {s:.0%} "
           "(no retraining) | int8 dynamic |", "|---|---|---|---|---|"]
  for name, r in rows.items():
    def cell(value, base):
      return f"{value:.2f} ({value - base:+.2f})"
    lines.append(f"| {name} | {r['full']:.2f} | {cell(r['imp'], r['full'])} | "
                 f"{cell(r['oneshot'], r['oneshot_dense'])} | "
                 f"{cell(r['int8'], r['int8_float32'])} |")
  lines += ["", "IMP's change is against the fine-tuned model's best evaluation; one-shot's "
            "and int8's against the same model's score in their own evaluation (the best "
            "checkpoint)."]
  return "\n".join(lines)


def plot_compare(results: dict, imp_rounds: dict, oneshot_rows: dict, out: Path) -> Path:
  """Left: bars of the dev metric per optimizer (fine-tuned, IMP, one-shot,
  int8). Right: IMP (solid) and one-shot (dashed) curves against sparsity."""
  plt = figures.pyplot()
  fig, (bars, curves) = plt.subplots(1, 2, figsize=(11, 4.2))
  names = list(results["optimizers"])
  kinds = [("full", "fine-tuned"), ("imp", f"IMP {results['sparsity']:.0%}"),
           ("oneshot", f"one-shot {results['sparsity']:.0%}"), ("int8", "int8")]
  width = 0.8 / len(kinds)
  for k, (key, label) in enumerate(kinds):
    xs = [i + (k - (len(kinds) - 1) / 2) * width for i in range(len(names))]
    values = [results["optimizers"][n][key] for n in names]
    bars.bar(xs, values, width, label=label, color=f"C{k}")
    for x, v in zip(xs, values):
      bars.text(x, v, f"{v:.1f}", ha="center", va="bottom", fontsize=7)
  metric = results["optimizers"][names[0]]["metric"]
  bars.set(xticks=range(len(names)), xticklabels=names, ylabel=f"dev {metric}",
           title=f"{results['task']}: before and after compression")
  low = min(min(r[k] for k, _ in kinds) for r in results["optimizers"].values())
  bars.set_ylim(max(0.0, low - 10), None)
  bars.legend(fontsize=8)
  for i, n in enumerate(names):
    color = f"C{i}"
    ir = imp_rounds[n]
    curves.plot([100 * r["target_sparsity"] for r in ir], [r["metric"] for r in ir], "o-",
                color=color, label=f"{n}: IMP")
    orows = oneshot_rows[n]
    curves.plot([100 * r["target_sparsity"] for r in orows], [r["metric"] for r in orows],
                "x--", color=color, label=f"{n}: one-shot")
  curves.set(xlabel="sparsity of the prunable weights (%)", ylabel=f"dev {metric}",
             title="pruning curves")
  curves.grid(alpha=0.3)
  curves.legend(fontsize=8)
  return figures.save(fig, out)
