"""``flatjax sharpness RUN_DIR``: every flatness measure of one fine-tuned model.

The loss is the task's training loss (dropout off) averaged over a fixed,
seeded sample of ``examples`` examples of one split (Keskar et al. measure the
training loss; ``split="validation"`` is allowed). On it: Keskar's
epsilon-sharpness at each ``epsilons`` value, the Hessian's top eigenvalue by
power iteration and its trace by Hutchinson's estimator, and 1-D and 2-D loss
surfaces along filter-normalised random directions. Results go to
``sharpness.json`` and PNG plots in the output folder (``RUN/sharpness`` by
default). Side effects (files, progress) live here and in the CLI only.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np

from flatjax import files, provenance
from flatjax.console import say
from flatjax.data import pipeline
from flatjax.errors import FlatjaxInputError, require_positive
from flatjax.models import pretrained
from flatjax.sharpness import hessian, keskar, surface
from flatjax.train import losses, runs
from flatjax.train.trainer import check_rerun_folder

SPLITS = ("train", "validation")


@dataclasses.dataclass
class SharpnessConfig:
  """A ``flatjax sharpness`` run (the flags map 1:1). Zero iterations, samples or
  grid points skip that measure."""
  run: str
  """a flatjax train run folder (its best/ model) or a model folder"""
  output: str | None = None
  """results folder (default: RUN/sharpness)"""
  task: str | None = None
  """the task (default: the run's)"""
  data: str | None = None
  """the data (default: the run's)"""
  split: str = "train"
  """the split whose loss is measured (train, as Keskar et al.)"""
  examples: int = 256
  """a fixed, seeded sample of this many examples (256)"""
  batch_size: int = 32
  """examples per batch"""
  max_length: int | None = None
  """tokens per sequence (default: the run's, else the task's)"""
  seed: int = 0
  """seeds the sample, the subspace, the probes and the directions"""
  epsilons: tuple[float, ...] = (1e-3, 5e-3)
  """box sizes of the epsilon-sharpness (--epsilon, repeatable)"""
  subspace_dim: int | None = None
  """maximise in a random subspace of this dimension (null: the full space, A = I)"""
  maxiter: int = 10
  """L-BFGS-B iterations (10)"""
  hessian_iterations: int = 20
  """power iterations at most, 0 skips (20)"""
  hessian_tol: float = 1e-3
  """power iteration stops at this relative change (1e-3)"""
  hutchinson_samples: int = 10
  """Rademacher probes of the trace estimate, 0 skips (10)"""
  surface_points: int = 21
  """1-D loss surface points over [-radius, radius], 0 skips (21)"""
  contour_points: int = 11
  """2-D loss surface points per axis, 0 skips (11)"""
  radius: float = 1.0
  """surfaces span [-radius, radius] along each direction (1)"""
  progress: bool = True
  """show progress messages"""

  def validate(self) -> None:
    if self.split not in SPLITS:
      raise FlatjaxInputError(f"split must be one of {', '.join(SPLITS)}, got {self.split!r}")
    require_positive(None, self, "examples", "batch_size", "maxiter", "max_length",
                     "hessian_tol")
    for name in ("hessian_iterations", "hutchinson_samples", "surface_points",
                 "contour_points", "seed"):
      if getattr(self, name) < 0:
        raise FlatjaxInputError(f"{name.replace('_', '-')} must be non-negative")
    if self.hutchinson_samples == 1:
      raise FlatjaxInputError("hutchinson-samples must be 0 (skip) or at least 2")
    if self.contour_points == 1 or self.surface_points == 1:
      raise FlatjaxInputError("a surface needs at least 2 grid points (0 skips it)")
    if not (math.isfinite(self.radius) and self.radius > 0):
      raise FlatjaxInputError(f"radius must be a finite number > 0, got {self.radius}")
    for eps in self.epsilons:  # KeskarConfig checks each, before any work is done
      keskar.KeskarConfig(epsilon=eps, subspace_dim=self.subspace_dim, maxiter=self.maxiter,
                          seed=self.seed)


def _no_arrays(result: Any, drop: tuple[str, ...]) -> dict:
  return {k: v for k, v in result._asdict().items() if k not in drop}


def _json_floats(value: Any) -> Any:
  if isinstance(value, dict):
    return {k: _json_floats(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_json_floats(v) for v in value]
  if isinstance(value, (np.ndarray, np.generic, jax.Array)):
    return np.asarray(value).tolist()
  return value


def load_objective(config: SharpnessConfig):
  """``(run, model, loss_fn)``: the run's model and its mean loss over the fixed sample."""
  run = runs.resolve_finetuned(config.run, config.task)
  data = config.data or run.data
  if data is None:
    raise FlatjaxInputError(f"{config.run} does not record its data; pass --data")
  settings = run.settings
  max_length = (config.max_length or settings.get("max_length")
                or run.task.default_max_length)
  model = pretrained.from_pretrained(run.model_dir, run.task)
  tokenizer = pretrained.load_tokenizer(model.tokenizer_dir)
  split = pipeline.load_split(run.task, tokenizer, data, config.split,
                              batch_size=config.batch_size, max_length=max_length,
                              shuffle=False, seed=config.seed, max_examples=config.examples,
                              pad_to="max_length")
  batches = [{k: v for k, v in b.items() if k != "example_index"}
             for b in split.batcher.epoch(0)]
  loss = losses.make_loss_fn(model.module, run.task, deterministic=True)
  key = jax.random.key(0)  # unused: dropout is off

  def per_batch(params, batch):
    return loss(params, batch, key)[0]
  return run, model, hessian.batch_loss_mean(per_batch, batches), {
      "data": str(data), "split": config.split, "examples": split.num_examples,
      "max_length": max_length, "batch_size": config.batch_size}


def run_sharpness(config: SharpnessConfig) -> dict:
  """Measures everything ``config`` asks for; returns (and writes) the results."""
  config.validate()
  found = runs.resolve_finetuned(config.run, config.task)
  out = Path(config.output) if config.output else (found.run_dir or found.model_dir) / "sharpness"
  check_rerun_folder(out, "sharpness.json", "sharpness results")
  run, model, loss_fn, sample = load_objective(config)
  out.mkdir(parents=True, exist_ok=True)
  provenance.write_run_json(out, config, {"model": run.model_dir, "data": sample["data"]})
  params = model.params
  note = say if config.progress else (lambda msg: None)
  results: dict[str, Any] = {
      "run": config.run, "model": str(run.model_dir), "task": run.task.name,
      "optimizer": run.optimizer, "sample": sample,
      "num_params": int(sum(x.size for x in jax.tree.leaves(params))),
      "config": dataclasses.asdict(config)}
  t0 = time.time()
  results["loss"] = float(loss_fn(params))
  note(f"loss on {sample['examples']} {config.split} examples: {results['loss']:.5f}")

  results["keskar"] = []
  for eps in config.epsilons:
    kc = keskar.KeskarConfig(epsilon=eps, subspace_dim=config.subspace_dim,
                             maxiter=config.maxiter, seed=config.seed)
    r = keskar.keskar_sharpness(loss_fn, params, kc)
    results["keskar"].append(_no_arrays(r, ()))
    note(f"epsilon-sharpness at {eps:g}: {r.sharpness:.4f} ({r.evaluations} evaluations)")

  if config.hessian_iterations:
    r = hessian.top_hessian_eigenvalue(
        loss_fn, params, key=config.seed, max_iterations=config.hessian_iterations,
        tol=config.hessian_tol,
        callback=lambda k, lam: note(f"power iteration {k}: {float(lam):.4f}"))
    results["hessian_top_eigenvalue"] = _no_arrays(r, ("eigenvector",))
    note(f"top Hessian eigenvalue: {r.eigenvalue:.4f} after {r.iterations} iterations")

  if config.hutchinson_samples:
    r = hessian.hutchinson_trace(
        loss_fn, params, key=config.seed, num_samples=config.hutchinson_samples,
        callback=lambda j, z: note(f"Hutchinson probe {j}: {float(z):.2f}"))
    results["hessian_trace"] = _no_arrays(r, ("samples",))
    note(f"Hessian trace: {r.trace:.2f} +- {r.stderr:.2f}")

  title = f"{run.task.name}, {run.optimizer or run.model_dir.name}"
  if config.surface_points:
    d = surface.filter_normalized_direction(jax.random.fold_in(jax.random.key(config.seed), 1),
                                            params)
    s1 = surface.loss_surface_1d(loss_fn, params, d,
                                 surface.grid(-config.radius, config.radius,
                                              config.surface_points))
    results["surface_1d"] = {"alphas": np.asarray(s1.alphas).tolist(),
                             "losses": np.asarray(s1.losses).tolist()}
    surface.plot_surface_1d(s1, out / "surface_1d.png", title=title)
    note(f"1-D surface: {config.surface_points} points -> {out / 'surface_1d.png'}")
  if config.contour_points:
    key = jax.random.key(config.seed)
    d1 = surface.filter_normalized_direction(jax.random.fold_in(key, 2), params)
    d2 = surface.filter_normalized_direction(jax.random.fold_in(key, 3), params)
    g = surface.grid(-config.radius, config.radius, config.contour_points)
    s2 = surface.loss_surface_2d(loss_fn, params, (d1, d2), g, g)
    results["surface_2d"] = {"alphas": np.asarray(s2.alphas).tolist(),
                             "betas": np.asarray(s2.betas).tolist(),
                             "losses": np.asarray(s2.losses).tolist()}
    surface.plot_surface_2d(s2, out / "surface_2d.png", title=title)
    note(f"2-D surface: {config.contour_points}^2 points -> {out / 'surface_2d.png'}")
  results["seconds"] = round(time.time() - t0, 1)
  results = _json_floats(results)
  files.write_json(out / "sharpness.json", results)
  return results
