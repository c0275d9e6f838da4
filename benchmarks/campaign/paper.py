"""Part B: the paper's claims with MiniLM on full training sets.

For each task (RTE, MRPC: 10 epochs; SST-2: 3 epochs; batch 32, length 128, Adam's
linear decay to 0 without warmup, the paper's recipe) and each seed, MiniLM is fine-tuned
with Adam and with SAM (rho 0.05; 0.02 too where 0.05 stays within the chance margin).
The learning rate is 2e-5 or, where :attr:`Recipe.lrs` lists several, the one whose Adam
run on the first seed scores best on dev. Each run keeps its best epoch (dev metric) and
that model is then compressed:

* int8: PyTorch's dynamic quantization (``flatjax.quant``) of every dense kernel;
* one-shot: global magnitude pruning of the encoder kernels (the ``encoder`` scope, as
  the CPU presets: MiniLM's pooler was never trained), 0 to 60% in 5% steps;
* IMP (after every fine-tuning, time permitting): ``imp_rounds`` rounds of global
  magnitude pruning to the task's reference sparsity, each retraining from the
  pre-trained weights under the mask (rewinding, Chen et al. 2020).

Every batch is padded to the full length, so each compiled step is reused by every run.
Each row stores the dev predictions, so bootstrap intervals can be computed afterwards.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
from pathlib import Path

import numpy as np

from benchmarks.campaign.ledger import Ledger

@dataclasses.dataclass(frozen=True)
class Recipe:
  """One task's runs. ``lrs``: Adam on the first seed tries each; the best is used."""
  task: str
  epochs: int
  lrs: tuple[float, ...] = (2e-5,)
  seeds: tuple[int, ...] = (0, 1, 2)
  rhos: tuple[float, ...] = (0.05, 0.02)
  batch_size: int = 32
  max_length: int = 128
  max_train_examples: int | None = None
  max_eval_examples: int | None = None
  oneshot_step: float = 0.05
  oneshot_max: float = 0.6
  scope: str = "encoder"
  imp_rounds: int = 2

  @property
  def sparsity(self) -> float:
    """IMP's target: the task's reference sparsity (the paper's Table 5)."""
    from flatjax.data.tasks import get_task
    return get_task(self.task).reference_sparsity


SWEEP = (2e-5, 5e-5, 1e-4)
#: A step's milliseconds before any is measured or recorded on the device (cost estimates).
DEFAULT_STEP_MS = {"adam": 15.0, "sam": 30.0}
#: Seconds a train step takes to compile the first time (MiniLM on an H200: about 38 s).
COMPILE_S = 40.0
FULL = (Recipe("rte", 10, lrs=SWEEP), Recipe("mrpc", 10, lrs=SWEEP),
        Recipe("sst2", 3, imp_rounds=1))
SMOKE = tuple(Recipe(t, 1, lrs=(2e-5, 1e-4), seeds=(0, 1), max_length=32,
                     max_train_examples=40, max_eval_examples=24, oneshot_step=0.3,
                     imp_rounds=1) for t in ("rte", "mrpc"))


def as_digits(preds: np.ndarray) -> str:
  """Class ids as one string ("0110..."): compact, and enough for a bootstrap."""
  return "".join(str(int(p)) for p in preds)


def chance(labels: np.ndarray, num_labels: int) -> dict:
  """The majority label's share of ``labels`` and a margin of two binomial standard errors
  around it (``200 sqrt(p (1 - p) / n)`` points, at least 1), in %: a model inside it has
  not learned the task, and the campaign then tries SAM's smaller radius too."""
  majority = 100 * float(np.bincount(labels, minlength=num_labels).max() / len(labels))
  p = majority / 100
  return {"majority": majority, "margin": max(1.0, 200 * math.sqrt(p * (1 - p) / len(labels)))}


class TaskData:
  """A task's tokenized training set and its dev split (fixed padding)."""

  def __init__(self, recipe: Recipe, glue_dir: Path, tokenizer):
    from flatjax.data import batching, glue, pipeline
    from flatjax.data.tasks import get_task
    self.recipe, self.task = recipe, get_task(recipe.task)
    train = glue.load_glue(self.task, glue_dir, "train", recipe.max_train_examples)
    self.train = batching.tokenize_examples(tokenizer, train, recipe.max_length)
    self.dev = pipeline.load_split(self.task, tokenizer, glue_dir, "validation",
                                   batch_size=128, max_length=recipe.max_length,
                                   shuffle=False, max_examples=recipe.max_eval_examples,
                                   pad_to="max_length")
    self.dev_labels = np.asarray(self.dev.batcher.encoded.labels)

  def batcher(self, seed: int):
    from flatjax.data import batching
    r = self.recipe
    return batching.Batcher(self.train, r.batch_size, shuffle=True, seed=seed,
                            pad_to="max_length", max_length=r.max_length,
                            pad_token_id=self.train.pad_token_id)

  def summary(self) -> dict:
    return {"part": "B", "kind": "data", "task": self.task.name,
            "train_examples": len(self.train),
            "dev_examples": len(self.dev_labels), "labels": as_digits(self.dev_labels),
            "main_metric": self.task.main_metric,
            **chance(self.dev_labels, self.task.num_labels)}


def _with_hyperparam(opt_state, index: int, name: str, value):
  """``opt_state`` (a chain's tuple) with hyperparameter ``name`` of link ``index`` set."""
  link = opt_state[index]
  links = list(opt_state)
  links[index] = link._replace(hyperparams={**link.hyperparams, name: value})
  return tuple(links)


class Trainer:
  """The jitted pieces of one model architecture, compiled once and shared by every run:
  a train step per optimizer (``adam``; ``sam``, with rho in its state), the eval step,
  and the int8 eval step."""

  def __init__(self, module, task):
    import flatjax
    import jax
    import optax
    from flatjax.quant import model as quant_model
    from flatjax.train import losses, steps
    self.module, self.task = module, task
    adam = optax.inject_hyperparams(optax.adam)(learning_rate=0.0)
    self.txs = {"adam": optax.chain(adam),
                "sam": optax.chain(optax.inject_hyperparams(flatjax.sam)(rho=0.05), adam)}
    self.loss_fn = losses.make_loss_fn(module, task)
    self._steps: dict[tuple, object] = {}
    self._pruners: dict[tuple, object] = {}
    self.eval_step = jax.jit(steps.make_eval_step(module))
    self.int8_step = jax.jit(quant_model.make_quantized_eval_step(module, "dynamic"))
    self.take = jax.jit(lambda arrays, i: jax.tree.map(lambda a: a[i], arrays))
    self.ms_per_step: dict[str, float] = {}  # steady state, measured by this process
    self.compiled: set[tuple] = set()  # the step_kind()s this process has run

  def step(self, optimizer: str, pruner=None):
    """The jitted step of ``optimizer`` (with ``pruner``, if any): one per pair."""
    import jax
    from flatjax.train import steps
    key = (optimizer, id(pruner))
    if key not in self._steps:
      step = steps.make_train_step(self.loss_fn, self.txs[optimizer], pruner=pruner)
      self._steps[key] = jax.jit(self._with_lr(step), donate_argnums=0)
    return self._steps[key]

  def pruner(self, sparsity: float, begin: int, end: int, scope: str):
    """Movement pruning (per-tensor top-k of the scores, cubic schedule), one per setting."""
    from flatjax.sparsity import methods
    key = (sparsity, begin, end, scope)
    if key not in self._pruners:
      self._pruners[key] = methods.movement_pruning(sparsity, begin_step=begin, end_step=end,
                                                     scope=scope)
    return self._pruners[key]

  @staticmethod
  def _with_lr(train_step):
    def step(state, batch, lr):
      opt_state = _with_hyperparam(state.opt_state, -1, "learning_rate", lr)
      return train_step(state.replace(opt_state=opt_state), batch)
    return step

  def init_state(self, params, optimizer: str, rho: float, seed: int, mask=None,
                 pruner=None):
    import jax.numpy as jnp
    from flatjax.train import state as train_state
    state = train_state.create(params, self.txs[optimizer], seed, mask=mask, pruner=pruner)
    if optimizer == "sam":
      rho = jnp.asarray(rho, jnp.float32)
      state = state.replace(opt_state=_with_hyperparam(state.opt_state, 0, "rho", rho))
    return state

  def evaluate(self, params, mask, split, step=None) -> tuple[dict, np.ndarray]:
    """Dev scores and predicted class ids of ``params`` under ``mask``."""
    from flatjax.data import pipeline
    from flatjax.train import evaluation
    outputs = evaluation.predict(step or self.eval_step, params, mask, split)
    logits = pipeline.gather(outputs, "logits", split.num_examples)
    return split.score(outputs), np.argmax(logits, axis=-1)

  def epoch_arrays(self, batcher, epoch: int) -> dict:
    """Epoch ``epoch``'s batches stacked on the device: one transfer per epoch."""
    import jax
    from flatjax.data.pipeline import LOSS_KEYS
    batches = list(batcher.epoch(epoch))
    return {k: jax.device_put(np.stack([b[k] for b in batches]))
            for k in LOSS_KEYS if k in batches[0]}

  def train(self, params, optimizer: str, lr: float, rho: float, seed: int, data: TaskData,
            epochs: int, mask=None, log=print, pruner=None, best_from: int = 0) -> dict:
    """Fine-tunes; returns the best epoch's params, mask, scores and predictions (among
    the epochs ending at step ``best_from`` or later), and the history."""
    import jax
    import jax.numpy as jnp
    state = self.init_state(params, optimizer, rho, seed, mask, pruner)
    step = self.step(optimizer, pruner)
    batcher, main = data.batcher(seed), data.task.main_metric
    total, t, history, best = epochs * batcher.num_batches, 0, [], None
    t0, first_s = time.perf_counter(), 0.0
    for epoch in range(epochs):
      arrays, epoch_losses = self.epoch_arrays(batcher, epoch), []
      for i in range(batcher.num_batches):
        lr_t = np.float32(lr * (1.0 - t / total))
        state, metrics = step(state, self.take(arrays, i), lr_t)
        epoch_losses.append(metrics["loss"])
        t += 1
        if t == 1:  # the first step compiles (or loads) the step: timed apart
          jax.block_until_ready(metrics)
          first_s = time.perf_counter() - t0
      loss = float(jnp.mean(jnp.stack(epoch_losses)))
      scores, preds = self.evaluate(state.params, state.mask, data.dev)
      history.append({"epoch": epoch + 1, "train_loss": loss, "dev": scores})
      log(f"  epoch {epoch + 1}/{epochs}: loss {loss:.4f}, dev {main} {scores[main]:.2f}")
      if t >= best_from and (best is None or scores[main] > best["scores"][main]):
        best = {"params": jax.tree.map(jnp.copy, state.params), "scores": scores,
                "mask": jax.tree.map(jnp.copy, state.mask), "preds": preds,
                "epoch": epoch + 1}
    jax.block_until_ready(state)
    seconds = time.perf_counter() - t0
    self.ms_per_step[optimizer] = 1e3 * (seconds - first_s) / max(total - 1, 1)
    self.compiled.add(step_kind(optimizer, mask is not None, pruner is not None))
    return {**best, "history": history, "steps": total, "train_s": seconds,
            "first_step_s": first_s}


class PartB:
  """Part B's units on one model folder; the fine-tuned params stay in memory for IMP."""

  def __init__(self, ledger: Ledger, model_dir: Path, glue_dir: Path):
    from flatjax.models import pretrained
    self.ledger, self.model_dir, self.glue_dir = ledger, Path(model_dir), Path(glue_dir)
    self.tokenizer = pretrained.load_tokenizer(self.model_dir)
    self.trainers: dict[str, Trainer] = {}
    self.finetuned: dict[str, object] = {}

  def model_path(self, unit: str) -> Path:
    return self.ledger.out / "models" / (unit.replace("/", "_") + ".msgpack")

  def save(self, unit: str) -> None:
    """Writes a fine-tuned model kept in memory, so a rerun's IMP can start from it."""
    from flax import serialization
    path = self.model_path(unit)
    if unit in self.finetuned and not path.exists():
      path.parent.mkdir(parents=True, exist_ok=True)
      path.write_bytes(serialization.to_bytes(self.finetuned[unit]))

  def has(self, unit: str) -> bool:
    return unit in self.finetuned or self.model_path(unit).exists()

  def fine_tuned(self, unit: str, data: TaskData, optimizer: str, lr: float, rho: float,
                 seed: int) -> tuple[object, bool]:
    """The fine-tuned params of ``unit`` (memory, else its file, else trained again, as a
    run on a fresh machine has neither) and whether they were trained again."""
    from flax import serialization
    if unit in self.finetuned:
      return self.finetuned[unit], False
    if self.model_path(unit).exists():
      self.finetuned[unit] = serialization.from_bytes(self.pretrained(data.task, seed),
                                                      self.model_path(unit).read_bytes())
      return self.finetuned[unit], False
    run = self.trainer(data.task).train(self.pretrained(data.task, seed), optimizer, lr, rho,
                                        seed, data, data.recipe.epochs, log=self.ledger.say)
    self.finetuned[unit] = run["params"]
    self.save(unit)
    return run["params"], True

  def trainer(self, task) -> Trainer:
    from flatjax.models import from_pretrained
    key = trainer_key(task)
    if key not in self.trainers:
      self.trainers[key] = Trainer(from_pretrained(self.model_dir, task).module, task)
    return self.trainers[key]

  def pretrained(self, task, seed: int):
    from flatjax.models import from_pretrained
    return from_pretrained(self.model_dir, task, seed=seed).params

  def cost(self, data: TaskData, optimizer: str, runs: int = 1, mask: bool = False,
           pruner: bool = False) -> float:
    """Expected seconds of ``runs`` fine-tunings: their steps at :meth:`step_ms`, 5 s of
    evaluation each, and :data:`COMPILE_S` unless this process has run that step."""
    steps = data.recipe.epochs * data.batcher(0).num_batches
    trainer = self.trainers.get(trainer_key(data.task))
    compiled = trainer is not None and step_kind(optimizer, mask, pruner) in trainer.compiled
    return runs * (steps * self.step_ms(optimizer) / 1e3 + 5.0) + (0 if compiled else COMPILE_S)

  def step_ms(self, optimizer: str) -> float:
    """A step's steady milliseconds: the slowest measured by this process, else the median
    of the rows recorded on this device (a rerun's first units), else a default."""
    measured = [t.ms_per_step[optimizer] for t in self.trainers.values()
                if optimizer in t.ms_per_step]
    if measured:
      return max(measured)
    recorded = [steady_ms(r) for r in self.ledger.rows.values()
                if r.get("kind") == "finetune" and r.get("optimizer") == optimizer
                and r.get("device") == self.ledger.stamp["device"]]
    return statistics.median(recorded) if recorded else DEFAULT_STEP_MS[optimizer]

  def finetune(self, data: TaskData, optimizer: str, lr: float, rho: float, seed: int,
               unit: str) -> dict:
    """One fine-tuning and its int8 and one-shot compressions (a results row)."""
    from flatjax.quant import model as quant_model
    from flatjax.recipes import oneshot
    from flatjax.sparsity import masks
    r, trainer = data.recipe, self.trainer(data.task)
    run = trainer.train(self.pretrained(data.task, seed), optimizer, lr, rho, seed, data,
                        r.epochs, log=self.ledger.say)
    self.finetuned[unit] = run["params"]
    int8_scores, int8_preds = trainer.evaluate(
        quant_model.quantize_params(run["params"], "dynamic"), None, data.dev,
        trainer.int8_step)
    curve, pruned_preds = [], None
    for s in oneshot.sparsity_grid(r.oneshot_step, r.oneshot_max):
      mask = masks.magnitude_mask(run["params"], s, scope=r.scope)
      scores, preds = trainer.evaluate(run["params"], mask, data.dev)
      curve.append({"target": s, "sparsity": masks.sparsity(mask), "dev": scores})
      pruned_preds = preds
    return {"part": "B", "kind": "finetune", "task": data.task.name, "optimizer": optimizer,
            "rho": rho if optimizer == "sam" else None, "lr": lr, "seed": seed,
            "epochs": r.epochs, "steps": run["steps"], "batch_size": r.batch_size,
            "max_length": r.max_length, "train_examples": len(data.train),
            "best_epoch": run["epoch"], "dev": run["scores"], "int8": int8_scores,
            "oneshot": curve, "history": run["history"], "train_s": run["train_s"],
            "ms_per_step": 1e3 * run["train_s"] / run["steps"],
            "first_step_s": run["first_step_s"],
            "preds": {"dense": as_digits(run["preds"]), "int8": as_digits(int8_preds),
                      f"oneshot{curve[-1]['target']:g}": as_digits(pruned_preds)}}

  def imp(self, data: TaskData, source: str, optimizer: str, lr: float, rho: float,
          seed: int) -> dict:
    """IMP with rewinding from the fine-tuned model of unit ``source`` (a results row)."""
    from flatjax.sparsity import masks
    r, trainer = data.recipe, self.trainer(data.task)
    current, retrained = self.fine_tuned(source, data, optimizer, lr, rho, seed)
    mask, rounds = None, []
    for k in range(1, r.imp_rounds + 1):
      target = r.sparsity * k / r.imp_rounds
      mask = (masks.magnitude_mask(current, target, scope=r.scope) if mask is None else
              masks.magnitude_mask(current, target, previous=mask))
      run = trainer.train(self.pretrained(data.task, seed), optimizer, lr, rho, seed, data,
                          r.epochs, mask=mask, log=self.ledger.say)
      current, mask = run["params"], run["mask"]  # the state donated the mask it was given
      rounds.append({"round": k, "target": target, "sparsity": masks.sparsity(mask),
                     "best_epoch": run["epoch"], "dev": run["scores"],
                     "train_s": run["train_s"]})
    return {"part": "B", "kind": "imp", "task": data.task.name, "optimizer": optimizer,
            "rho": rho if optimizer == "sam" else None, "lr": lr, "seed": seed,
            "source": source, "source_retrained": retrained, "rounds": rounds,
            "dev": rounds[-1]["dev"],
            "preds": {"imp": as_digits(run["preds"])}}

  def movement(self, data: TaskData, optimizer: str, lr: float, rho: float, seed: int,
               sparsity: float = 0.6) -> dict:
    """Movement pruning to ``sparsity`` while fine-tuning (Sanh et al. 2020): the cubic
    schedule over :data:`MOVEMENT_SCHEDULE` of the run; the best epoch at full sparsity."""
    from flatjax.sparsity import masks
    r, trainer = data.recipe, self.trainer(data.task)
    total = r.epochs * data.batcher(seed).num_batches
    begin, end = (round(f * total) for f in MOVEMENT_SCHEDULE)
    run = trainer.train(self.pretrained(data.task, seed), optimizer, lr, rho, seed, data,
                        r.epochs, log=self.ledger.say, best_from=end,
                        pruner=trainer.pruner(sparsity, begin, end, r.scope))
    return {"part": "B", "kind": "movement", "task": data.task.name, "optimizer": optimizer,
            "rho": rho if optimizer == "sam" else None, "lr": lr, "seed": seed,
            "target": sparsity, "sparsity": masks.sparsity(run["mask"]),
            "schedule_steps": [begin, end], "steps": total, "best_epoch": run["epoch"],
            "dev": run["scores"], "history": run["history"], "train_s": run["train_s"],
            "preds": {"movement": as_digits(run["preds"])}}


MOVEMENT_SCHEDULE = (0.1, 0.7)  # the cubic schedule's start and end, as fractions of the run


def trainer_key(task) -> str:
  """Tasks of one kind and label count share a model head, so a Trainer and its steps:
  RTE, MRPC and SST-2 share one."""
  return f"{task.kind}-{task.num_labels}"


def step_kind(optimizer: str, masked: bool, pruned: bool) -> tuple[str, bool, bool]:
  """What a train step compiles for: its optimizer, and whether its state carries a mask
  and its step a pruner (each its own compilation)."""
  return optimizer, masked, pruned


def steady_ms(row: dict) -> float:
  """A fine-tuning row's milliseconds per step after the first (which compiles); rows
  made before ``first_step_s`` was recorded count their first step in."""
  if "first_step_s" in row:
    return 1e3 * (row["train_s"] - row["first_step_s"]) / max(row["steps"] - 1, 1)
  return row["ms_per_step"]


def unit_name(task: str, lr: float, optimizer: str, rho: float | None, seed: int) -> str:
  name = "adam" if optimizer == "adam" else f"sam{rho:g}"
  return f"b/{task}/lr{lr:g}/{name}/seed{seed}"


def learned(row: dict, data_row: dict) -> bool:
  """Whether a run's dev metric clears the majority label by the margin of :func:`chance`."""
  return row["dev"][data_row["main_metric"]] > data_row["majority"] + data_row["margin"]


class Campaign:
  """Part B in the issue's order: every task's fine-tunings (with their int8 and
  one-shot compressions) first, then IMP of those models."""

  def __init__(self, ledger: Ledger, part: PartB, recipes: tuple[Recipe, ...]):
    self.ledger, self.part, self.recipes = ledger, part, recipes
    self.datas: dict[str, TaskData] = {}
    self.chosen: dict[str, list[tuple[str, str, float, float | None, int]]] = {}

  def data(self, recipe: Recipe) -> tuple[TaskData, dict | None]:
    if recipe.task not in self.datas:
      self.datas[recipe.task] = TaskData(recipe, self.part.glue_dir, self.part.tokenizer)
    data = self.datas[recipe.task]
    return data, self.ledger.run(f"b/{recipe.task}/data", data.summary)

  def finetune(self, data: TaskData, optimizer: str, lr: float, rho: float | None,
               seed: int) -> dict | None:
    unit = unit_name(data.task.name, lr, optimizer, rho, seed)
    row = self.ledger.run(unit, lambda: self.part.finetune(data, optimizer, lr, rho or 0.0,
                                                           seed, unit),
                          self.part.cost(data, optimizer))
    if row is not None:
      self.part.save(unit)
    return row

  def learning_rate(self, data: TaskData) -> float:
    """The recipe's lr, or the best of its sweep (Adam, first seed; ties: the smaller)."""
    lrs, seed = data.recipe.lrs, data.recipe.seeds[0]
    rows = [(lr, self.finetune(data, "adam", lr, None, seed)) for lr in lrs]
    main = data.task.main_metric
    scored = [(lr, row["dev"][main]) for lr, row in rows if row is not None]
    if not scored:
      return lrs[0]
    best = max(scored, key=lambda x: (x[1], -x[0]))[0]
    sweep = ", ".join(f"{lr:g}: {s:.2f}" for lr, s in scored)
    self.ledger.say(f"{data.task.name}: lr {best:g} ({sweep})")
    return best

  def finetune_task(self, recipe: Recipe) -> None:
    data, info = self.data(recipe)
    lr = self.learning_rate(data)
    runs = self.chosen.setdefault(recipe.task, [])
    for seed in recipe.seeds:
      if self.finetune(data, "adam", lr, None, seed) is not None:
        runs.append((unit_name(recipe.task, lr, "adam", None, seed), "adam", lr, None, seed))
      sam = None  # IMP takes the SAM model that learned, or the last radius tried
      for rho in recipe.rhos:
        if self.finetune(data, "sam", lr, rho, seed) is None:
          break
        sam = (unit_name(recipe.task, lr, "sam", rho, seed), "sam", lr, rho, seed)
        if info is None or learned(self.ledger.get(sam[0]), info):
          break
      if sam is not None:
        runs.append(sam)

  def imp_task(self, recipe: Recipe) -> None:
    data, _ = self.data(recipe)
    for source, optimizer, lr, rho, seed in self.chosen.get(recipe.task, []):
      unit = source.replace("/lr", f"/imp{recipe.imp_rounds}/lr", 1)
      rounds = recipe.imp_rounds + (0 if self.part.has(source) else 1)
      cost = self.part.cost(data, optimizer, runs=rounds, mask=True)
      self.ledger.run(unit, lambda: self.part.imp(data, source, optimizer, lr, rho or 0.0,
                                                  seed), cost)

  def movement_task(self, recipe: Recipe, sparsity: float = 0.6) -> None:
    """Movement pruning with Adam and with SAM (rho 0.05), each seed, at the task's lr."""
    data, _ = self.data(recipe)
    lr = self.learning_rate(data)
    for seed in recipe.seeds:
      for optimizer, rho in (("adam", None), ("sam", recipe.rhos[0])):
        unit = unit_name(recipe.task, lr, optimizer, rho, seed).replace(
            "/lr", f"/movement{sparsity:g}/lr", 1)
        self.ledger.run(unit, lambda: self.part.movement(data, optimizer, lr, rho or 0.0,
                                                         seed, sparsity),
                        self.part.cost(data, optimizer, pruner=True))

  def recipe(self, task: str) -> Recipe | None:
    return next((r for r in self.recipes if r.task == task), None)

  def finetune_tasks(self, tasks: tuple[str, ...]) -> None:
    for task in tasks:
      if self.recipe(task) is not None:
        self.finetune_task(self.recipe(task))

  def imp_tasks(self, tasks: tuple[str, ...]) -> None:
    for task in tasks:
      if self.recipe(task) is not None:
        self.imp_task(self.recipe(task))

  def movement_tasks(self, tasks: tuple[str, ...]) -> None:
    for task in tasks:
      if self.recipe(task) is not None:
        self.movement_task(self.recipe(task))
