"""Per-task losses: a pure ``loss_fn(params, batch, rng) -> (loss, aux)``.

Every batch carries ``example_weight`` (1 real row, 0 padding row), so a short
last batch padded to full size gives the mean over its real rows only.
"""

from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from flatjax.data.tasks import TaskSpec
from flatjax.models.bert import MODEL_INPUTS

LossFn = Callable[[Any, dict, jax.Array], tuple[jax.Array, dict]]


def _weighted_mean(values: jax.Array, weight: jax.Array) -> jax.Array:
  return jnp.sum(values * weight) / jnp.maximum(jnp.sum(weight), 1.0)


def task_loss(task: TaskSpec, outputs: dict, batch: dict) -> jax.Array:
  """Cross-entropy (classification), MSE (regression, STS-B) or the mean of
  start and end cross-entropies (span extraction, SQuAD), as Hugging Face's heads."""
  w = batch["example_weight"]
  if task.kind == "span":
    start = optax.softmax_cross_entropy_with_integer_labels(
        outputs["start_logits"], batch["start_positions"])
    end = optax.softmax_cross_entropy_with_integer_labels(
        outputs["end_logits"], batch["end_positions"])
    return _weighted_mean((start + end) / 2, w)
  if task.is_regression:
    return _weighted_mean((outputs["logits"][:, 0] - batch["labels"]) ** 2, w)
  return _weighted_mean(optax.softmax_cross_entropy_with_integer_labels(
      outputs["logits"], batch["labels"]), w)


def make_loss_fn(module: nn.Module, task: TaskSpec, deterministic: bool = False) -> LossFn:
  """The training loss of ``module`` on ``task`` (dropout on unless ``deterministic``).

  The train step applies the state's pruning mask before calling it.
  """
  def loss_fn(params, batch, rng):
    outputs = module.apply({"params": params},
                           *(batch[k] for k in MODEL_INPUTS), deterministic=deterministic,
                           rngs={"dropout": rng})
    return task_loss(task, outputs, batch), {}
  return loss_fn
