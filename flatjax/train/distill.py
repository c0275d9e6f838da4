"""Distillation losses of CoFi structured pruning (Xia et al. 2022, Sec. 3.2).

CoFi ("Structured Pruning Learns Compact and Accurate Models") trains the
pruned student against its fine-tuned dense teacher with two losses, which
Na et al. (2022, "Train Flat, Then Compress") keep for their CoFi runs:

* **Prediction-layer distillation** (:func:`prediction_kl`,
  :func:`prediction_loss`): the KL divergence from the teacher's softened
  output distribution to the student's, at temperature ``T``:

      L_pred = T^2 * mean_b KL( softmax(z_t[b] / T) || softmax(z_s[b] / T) )

  as PyTorch's ``F.kl_div(log_softmax(z_s / T), softmax(z_t / T),
  reduction="batchmean") * T**2`` with ``T = 2``.

* **Layer distillation with dynamic matching** (:func:`layer_loss_matrix`,
  :func:`align_layers`, :func:`layer_distillation_loss`; CoFi's
  ``layer_distill_version`` 4): a fixed set of teacher layers
  (:func:`teacher_layers`, ``[2, 5, 8, 11]`` for 12-layer BERT) is matched to
  the student layers. With ``H_s^j`` the student's hidden states after layer
  ``j`` mapped by a learned linear map ``W_layer`` (the caller applies it) and
  ``H_t^i`` the teacher's chosen layers,

      M[i, j] = MSE(H_t^i, W_layer H_s^j)
      m(i)    = argmin_{j < m(i + 1), j existing} M[i, j],  m(T) = S
      L_layer = sum_i M[i, m(i)]

  picked from the last teacher layer back to the first, so the alignment keeps
  the layers' order. The choice ``m`` is not differentiated.

The combined loss (:func:`distillation_loss`) is
``layer_weight * L_layer + prediction_weight * L_pred``, weights from
:class:`DistillConfig`.

flatjax extensions, all reducing to CoFi on a full batch without padding:

* ``example_weight`` (1 real row, 0 padding row of a short last batch) turns
  every batch mean into the mean over real rows;
* the MSE of ``M`` averages over real tokens only (``token_weight =
  attention_mask * example_weight[:, None]``), where CoFi's
  ``nn.MSELoss`` averages over padding positions too;
* regression (STS-B, one output) uses the MSE between student and teacher
  outputs, where CoFi's KL over a single logit is identically zero; span
  extraction (SQuAD) averages the start and end KLs;
* when no student layer qualifies for a teacher layer, the previous pick is
  reused (see :func:`align_layers`);
* gradient accumulation: a micro-batch's loss under its whole batch's
  :class:`BatchTotals` and loss matrix (``totals``, ``alignment_matrix``) is
  its exact share of the whole batch's loss, so the shares sum to it.

Teacher inputs are fixed targets: every function stops their gradient.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp

from flatjax.data.tasks import get_task
from flatjax.errors import FlatjaxInputError

TASK_KINDS = ("classification", "regression", "span")


class BatchTotals(NamedTuple):
  """A whole batch's normalisers, handed to each of its micro-batches' losses:
  ``tokens`` the sum of its token weights, ``rows`` the sum of its row weights."""
  tokens: jax.Array
  rows: jax.Array


def batch_totals(attention_mask: jax.Array, example_weight: jax.Array) -> BatchTotals:
  """The :class:`BatchTotals` of a batch (:func:`token_weights` summed, and the rows' weights)."""
  return BatchTotals(jnp.sum(token_weights(attention_mask, example_weight)),
                     jnp.sum(jnp.asarray(example_weight, jnp.float32)))


def _weighted_mean(values: jax.Array, weight: Optional[jax.Array],
                   total: Optional[jax.Array] = None) -> jax.Array:
  """Mean of ``values`` [B] over rows, weighted by ``weight`` [B] if given.

  The denominator, ``sum(weight)`` or a given ``total`` (the whole batch's, for a
  micro-batch), is clamped at 1 (as :mod:`flatjax.train.losses`), so a batch of
  padding rows only gives 0, not NaN.
  """
  if weight is None and total is None:
    return jnp.mean(values)
  numerator = jnp.sum(values if weight is None else values * jnp.asarray(weight, values.dtype))
  if total is None:
    total = jnp.sum(jnp.asarray(weight, values.dtype))
  return numerator / jnp.maximum(total, 1.0)


def _check_temperature(temperature: Any) -> None:
  # Only Python numbers are checked: a traced temperature passes through.
  if isinstance(temperature, (int, float)) and not (
      math.isfinite(temperature) and temperature > 0):
    raise FlatjaxInputError(f"temperature must be a finite number > 0, got {temperature!r}")


def prediction_kl(student_logits: jax.Array, teacher_logits: jax.Array,
                  temperature: float = 2.0,
                  example_weight: Optional[jax.Array] = None,
                  total_weight: Optional[jax.Array] = None) -> jax.Array:
  """Prediction-layer distillation loss: the KL from teacher to student, times ``T^2``.

  With ``p = softmax(z_t / T)`` and ``q = softmax(z_s / T)`` over the last axis,

      L = T^2 * sum_b w_b KL(p_b || q_b) / sum_b w_b,
      KL(p || q) = sum_c p_c (log p_c - log q_c),

  where ``w = example_weight`` (``sum_b w_b`` clamped at 1); without weights
  ``w_b = 1``, which is PyTorch's ``F.kl_div(F.log_softmax(z_s / T, -1),
  F.softmax(z_t / T, -1), reduction="batchmean") * T**2`` (Hinton et al. 2015;
  CoFi, Xia et al. 2022, Eq. 6). The ``T^2`` keeps the gradient's scale
  independent of ``T``. The teacher's logits get no gradient.

  Args:
    student_logits: ``[B, C]`` student logits.
    teacher_logits: ``[B, C]`` teacher logits.
    temperature: ``T > 0``.
    example_weight: optional ``[B]`` row weights (1 real row, 0 padding row).
    total_weight: the denominator in place of ``sum_b w_b`` (a micro-batch's
      whole batch's :attr:`BatchTotals.rows`).

  Returns:
    A float32 scalar.
  """
  _check_temperature(temperature)
  if student_logits.shape != teacher_logits.shape:
    raise FlatjaxInputError(f"student logits {student_logits.shape} and teacher logits "
                            f"{teacher_logits.shape} differ in shape")
  s = jnp.asarray(student_logits, jnp.float32) / temperature
  t = jax.lax.stop_gradient(jnp.asarray(teacher_logits, jnp.float32)) / temperature
  log_p = jax.nn.log_softmax(t, axis=-1)
  log_q = jax.nn.log_softmax(s, axis=-1)
  p = jnp.exp(log_p)
  # p log p -> 0 as p -> 0 (kl_div's convention for a zero target).
  kl = jnp.sum(jnp.where(p > 0, p * (log_p - log_q), 0.0), axis=-1)
  return _weighted_mean(kl, example_weight, total_weight) * temperature ** 2


def prediction_loss(task_kind: str, student_outputs: dict, teacher_outputs: dict,
                    temperature: float = 2.0,
                    example_weight: Optional[jax.Array] = None,
                    total_weight: Optional[jax.Array] = None) -> jax.Array:
  """Prediction-layer distillation for a task kind, on the model's output dicts.

  * ``"classification"``: :func:`prediction_kl` of ``outputs["logits"]`` ``[B, C]``;
  * ``"regression"`` (STS-B, ``logits`` ``[B, 1]``): the mean squared error
    ``sum_b w_b (y_s[b] - y_t[b])^2 / sum_b w_b`` (no temperature);
  * ``"span"`` (SQuAD, ``start_logits`` / ``end_logits`` ``[B, L]``):
    ``(KL_start + KL_end) / 2``, each a :func:`prediction_kl` over positions.

  Args:
    task_kind: ``"classification"``, ``"regression"`` or ``"span"`` (``TaskSpec.kind``).
    student_outputs: the student model's outputs dict.
    teacher_outputs: the teacher model's outputs dict (no gradient).
    temperature: ``T > 0`` of the KL losses.
    example_weight: optional ``[B]`` row weights (1 real row, 0 padding row).
    total_weight: the denominator in place of ``sum_b w_b`` (as :func:`prediction_kl`).

  Returns:
    A float32 scalar.
  """
  if task_kind == "classification":
    return prediction_kl(student_outputs["logits"], teacher_outputs["logits"],
                         temperature, example_weight, total_weight)
  if task_kind == "regression":
    s = jnp.asarray(student_outputs["logits"], jnp.float32)
    t = jax.lax.stop_gradient(jnp.asarray(teacher_outputs["logits"], jnp.float32))
    if s.shape != t.shape:
      raise FlatjaxInputError(f"student outputs {s.shape} and teacher outputs {t.shape} "
                              "differ in shape")
    sq = jnp.sum(((s - t) ** 2).reshape(s.shape[0], -1), axis=-1)  # [B, 1] -> [B]
    return _weighted_mean(sq, example_weight, total_weight)
  if task_kind == "span":
    start = prediction_kl(student_outputs["start_logits"], teacher_outputs["start_logits"],
                          temperature, example_weight, total_weight)
    end = prediction_kl(student_outputs["end_logits"], teacher_outputs["end_logits"],
                        temperature, example_weight, total_weight)
    return (start + end) / 2
  raise FlatjaxInputError(f"unknown task kind {task_kind!r}; expected one of "
                          f"{', '.join(TASK_KINDS)}")


def teacher_layers(num_layers: int, n: int = 4) -> list[int]:
  """The ``n`` teacher layers distilled into the student, evenly spread, last included.

  ``[ceil((i + 1) * num_layers / n) - 1 for i in range(n)]`` (0-based indices
  of hidden states after each layer, embeddings excluded): CoFi's
  ``[2, 5, 8, 11]`` for 12 layers and ``n = 4``; ``[1, 2, 4, 5]`` for 6.

  Raises:
    FlatjaxInputError: unless ``1 <= n <= num_layers`` (both integers).
  """
  if (isinstance(num_layers, bool) or isinstance(n, bool)
      or not isinstance(num_layers, int) or not isinstance(n, int)):
    raise FlatjaxInputError(f"num_layers and n must be integers, got {num_layers!r}, {n!r}")
  if num_layers < 1 or not 1 <= n <= num_layers:
    raise FlatjaxInputError(
        f"need 1 <= n <= num_layers to pick teacher layers, got n={n}, num_layers={num_layers}")
  return [-(-(i + 1) * num_layers // n) - 1 for i in range(n)]


def token_weights(attention_mask: jax.Array,
                  example_weight: Optional[jax.Array] = None) -> jax.Array:
  """Per-token weights ``attention_mask * example_weight[:, None]`` ``[B, L]`` (float32)
  for :func:`layer_loss_matrix`: 1 for real tokens of real rows, else 0."""
  w = jnp.asarray(attention_mask, jnp.float32)
  if example_weight is not None:
    w = w * jnp.asarray(example_weight, jnp.float32)[:, None]
  return w


def layer_loss_matrix(student_states: jax.Array, teacher_states: jax.Array,
                      token_weight: jax.Array,
                      total_weight: Optional[jax.Array] = None) -> jax.Array:
  """The MSE between every chosen teacher layer and every (mapped) student layer.

      M[i, j] = sum_{b,l} w[b, l] ||H_t^i[b, l] - H_s^j[b, l]||^2 / (d * sum_{b,l} w[b, l])

  with ``w = token_weight`` (``sum w`` clamped at 1). With ``w`` the
  attention mask times the example weight this is the MSE over real tokens
  only. CoFi uses ``nn.MSELoss(reduction="mean")``, which also averages over
  padding positions (same as ``w = 1`` everywhere here); flatjax leaves
  padding out, so the loss does not depend on the padded length or on what
  the model computes at padding positions.

  Args:
    student_states: ``[S, B, L, d]`` hidden states after each student layer
      (not the embeddings), already through the learned linear map.
    teacher_states: ``[T, B, L, d]`` hidden states of the chosen teacher
      layers (:func:`teacher_layers`); no gradient.
    token_weight: ``[B, L]`` token weights (:func:`token_weights`).
    total_weight: the denominator's token count in place of ``sum w`` (a
      micro-batch's whole batch's :attr:`BatchTotals.tokens`).

  Returns:
    ``M``, float32 ``[T, S]``.
  """
  if student_states.ndim != 4 or teacher_states.ndim != 4:
    raise FlatjaxInputError(
        f"expected student states [S, B, L, d] and teacher states [T, B, L, d], got "
        f"{student_states.shape} and {teacher_states.shape}")
  if student_states.shape[1:] != teacher_states.shape[1:]:
    raise FlatjaxInputError(f"student states {student_states.shape} and teacher states "
                            f"{teacher_states.shape} differ in [B, L, d]")
  if token_weight.shape != student_states.shape[1:3]:
    raise FlatjaxInputError(f"token_weight {token_weight.shape} is not [B, L] = "
                            f"{student_states.shape[1:3]}")
  s = jnp.asarray(student_states, jnp.float32)
  t = jax.lax.stop_gradient(jnp.asarray(teacher_states, jnp.float32))
  w = jnp.asarray(token_weight, jnp.float32)
  denom = jnp.maximum(jnp.sum(w) if total_weight is None else total_weight, 1.0) * s.shape[-1]
  # Squared differences taken directly (not expanded as t^2 - 2ts + s^2, which
  # cancels badly when the student is close); one teacher layer at a time, so
  # an unjitted call holds [S, B, L, d] at most, and XLA fuses it under jit.
  rows = [jnp.sum(jnp.sum((t[i][None] - s) ** 2, axis=-1) * w, axis=(1, 2)) / denom
          for i in range(t.shape[0])]
  return jnp.stack(rows)


def align_layers(loss_matrix: jax.Array, existing: Optional[jax.Array] = None) -> jax.Array:
  """Dynamic layer matching with an order constraint (CoFi's ``layer_distill_version`` 4).

  Going from the last teacher layer ``i = T - 1`` back to ``i = 0``:

      m(i) = argmin_j { M[i, j] : j < m(i + 1), existing[j] },   m(T) = S

  (ties: the lowest ``j``), so the aligned student layers strictly increase
  with the teacher layers where candidates exist. ``existing`` marks the
  student layers still present; CoFi passes ``head_layer_z != 0``, the layers
  whose attention block is not pruned away.

  No candidate (every earlier layer pruned, or ``m(i + 1) = 0``): CoFi reuses
  the bound ``m(i + 1)``, which for the last teacher layer is the out-of-range
  index ``S``. flatjax reuses the previous pick, ``m(i) = m(i + 1)``, and
  ``S - 1`` (the last student layer) for the last teacher layer, so the index
  is always valid; where this happens the order is non-strict and the layer
  may be a pruned one.

  Jittable: ``loss_matrix`` and ``existing`` may be traced; ``T`` and ``S``
  are static. The choice carries no gradient.

  Args:
    loss_matrix: ``[T, S]``, ``M[i, j]`` the loss of teacher layer ``i``
      against student layer ``j`` (:func:`layer_loss_matrix`).
    existing: optional ``[S]`` bool (or numeric, nonzero = exists); default
      all student layers exist.

  Returns:
    The alignment ``m``, int32 ``[T]``.
  """
  loss_matrix = jax.lax.stop_gradient(jnp.asarray(loss_matrix))
  if loss_matrix.ndim != 2:
    raise FlatjaxInputError(f"loss_matrix must be [T, S], got shape {loss_matrix.shape}")
  num_teacher, num_student = loss_matrix.shape
  if num_student < 1:
    raise FlatjaxInputError("loss_matrix has no student layers")
  if existing is None:
    exists = jnp.ones((num_student,), bool)
  else:
    exists = jax.lax.stop_gradient(jnp.asarray(existing))
    if exists.shape != (num_student,):
      raise FlatjaxInputError(f"existing must be [S] = [{num_student}], got {exists.shape}")
    exists = exists.astype(bool)
  layer_ids = jnp.arange(num_student)
  bound = jnp.int32(num_student)            # candidates: j < bound
  previous = jnp.int32(num_student - 1)     # the fallback when none qualifies
  alignment = [None] * num_teacher
  for i in range(num_teacher - 1, -1, -1):
    candidate = exists & (layer_ids < bound)
    values = jnp.where(candidate, loss_matrix[i], jnp.inf)
    pick = jnp.argmin(values).astype(jnp.int32)
    # All candidate values +inf: argmin gives 0, maybe not a candidate; take the first one.
    pick = jnp.where(candidate[pick], pick, jnp.argmax(candidate).astype(jnp.int32))
    pick = jnp.where(jnp.any(candidate), pick, previous)
    alignment[i] = pick
    bound = previous = pick
  return jnp.stack(alignment).astype(jnp.int32)


def layer_distillation_loss(loss_matrix: jax.Array,
                            existing: Optional[jax.Array] = None,
                            alignment_matrix: Optional[jax.Array] = None
                            ) -> tuple[jax.Array, jax.Array]:
  """``L_layer = sum_i M[i, m(i)]`` with ``m = align_layers(M, existing)``.

  The alignment is a fixed (non-differentiated) choice: ``dL/dM`` is 1 at
  ``(i, m(i))`` and 0 elsewhere, so gradients reach only the selected pairs.
  With ``alignment_matrix`` (a micro-batch's whole batch's ``M``) the
  alignment is chosen on it instead: the whole batch's choice, not the
  micro-batch's.

  Returns:
    ``(loss, alignment)``: a float32 scalar and int32 ``[T]``.
  """
  loss_matrix = jnp.asarray(loss_matrix)
  chosen_on = loss_matrix if alignment_matrix is None else alignment_matrix
  alignment = jax.lax.stop_gradient(align_layers(chosen_on, existing))
  loss = jnp.sum(loss_matrix[jnp.arange(loss_matrix.shape[0]), alignment])
  return loss, alignment


def _check_weight(name: str, value: Any) -> float:
  try:
    out = float(value)
  except (TypeError, ValueError):
    out = math.nan
  if not (math.isfinite(out) and out >= 0):  # NaN fails too
    raise FlatjaxInputError(f"{name} must be a finite number >= 0, got {value!r}")
  return out


@dataclasses.dataclass(frozen=True)
class DistillConfig:
  """Settings of CoFi's distillation loss.

  Attributes:
    temperature: ``T`` of the prediction-layer KL (CoFi: 2).
    layer_weight: weight of the layer-distillation loss (CoFi's
      ``distill_loss_alpha``).
    prediction_weight: weight of the prediction-layer loss (CoFi's
      ``distill_ce_loss_alpha``).
    num_teacher_layers: how many teacher layers are matched
      (:func:`teacher_layers`; CoFi: 4).
  """
  temperature: float = 2.0
  layer_weight: float = 0.9
  prediction_weight: float = 0.1
  num_teacher_layers: int = 4

  def __post_init__(self):
    try:
      temperature = float(self.temperature)
    except (TypeError, ValueError):
      temperature = math.nan
    if not (math.isfinite(temperature) and temperature > 0):
      raise FlatjaxInputError(
          f"temperature must be a finite number > 0, got {self.temperature!r}")
    _check_weight("layer_weight", self.layer_weight)
    _check_weight("prediction_weight", self.prediction_weight)
    n = self.num_teacher_layers
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
      raise FlatjaxInputError(f"num_teacher_layers must be an integer >= 1, got {n!r}")

  @classmethod
  def for_task(cls, task_name: str) -> "DistillConfig":
    """The weights for a task, from its spec's ``distill_layer_weight``: Na et
    al. (2022) use layer-distillation weight 0.9 on SST-2 and QNLI and 0.7 on
    QQP and MNLI. The prediction weight is ``1 - layer_weight`` there (0.1 and
    0.3: flatjax's choice, matching CoFi's 0.9 / 0.1 pairing). Tasks without
    one get the default 0.9 / 0.1.

    Raises:
      FlatjaxInputError: an unknown task name (as :func:`flatjax.data.tasks.get_task`).
    """
    task = get_task(task_name)
    layer_weight = task.distill_layer_weight
    if layer_weight is None:
      return cls()
    return cls(layer_weight=layer_weight, prediction_weight=round(1.0 - layer_weight, 10))


def distillation_loss(config: DistillConfig, task_kind: str, student_outputs: dict,
                      teacher_outputs: dict, student_states: jax.Array,
                      teacher_states: jax.Array, token_weight: jax.Array,
                      example_weight: Optional[jax.Array],
                      existing: Optional[jax.Array] = None,
                      totals: Optional[BatchTotals] = None,
                      alignment_matrix: Optional[jax.Array] = None) -> tuple[jax.Array, dict]:
  """CoFi's distillation loss ``layer_weight * L_layer + prediction_weight * L_pred``.

  ``L_layer`` is :func:`layer_distillation_loss` of
  :func:`layer_loss_matrix` ``(student_states, teacher_states, token_weight)``
  and ``L_pred`` is :func:`prediction_loss` at ``config.temperature``.

  Args:
    config: the weights and temperature.
    task_kind: ``"classification"``, ``"regression"`` or ``"span"``.
    student_outputs / teacher_outputs: the models' output dicts (``logits`` or
      ``start_logits`` / ``end_logits``).
    student_states: ``[S, B, L, d]`` student hidden states after each layer,
      through the learned linear map.
    teacher_states: ``[config.num_teacher_layers, B, L, d]``, the teacher's
      hidden states at :func:`teacher_layers` ``(num_layers,
      config.num_teacher_layers)``.
    token_weight: ``[B, L]``, ``attention_mask * example_weight[:, None]``
      (:func:`token_weights`).
    example_weight: ``[B]`` row weights for the prediction loss, or None.
    existing: optional ``[S]`` mask of the student layers that still exist.
    totals: a micro-batch's whole batch's :class:`BatchTotals`, the
      denominators of both losses (default: this batch's own).
    alignment_matrix: the whole batch's ``M`` to align the layers on (default:
      this batch's own). With both, the loss is this micro-batch's exact share
      of the whole batch's: the shares of a batch's micro-batches sum to it.

  Returns:
    ``(loss, aux)``, aux with ``"layer_loss"``, ``"prediction_loss"``,
    ``"alignment"`` (int32 ``[T]``) and ``"loss_matrix"`` (``M``, ``[T, S]``).
  """
  if teacher_states.shape[0] != config.num_teacher_layers:
    raise FlatjaxInputError(f"teacher_states holds {teacher_states.shape[0]} layers, "
                            f"config.num_teacher_layers is {config.num_teacher_layers}")
  tokens, rows = (None, None) if totals is None else totals
  matrix = layer_loss_matrix(student_states, teacher_states, token_weight, tokens)
  layer_loss, alignment = layer_distillation_loss(matrix, existing, alignment_matrix)
  pred_loss = prediction_loss(task_kind, student_outputs, teacher_outputs,
                              config.temperature, example_weight, rows)
  loss = config.layer_weight * layer_loss + config.prediction_weight * pred_loss
  return loss, {"layer_loss": layer_loss, "prediction_loss": pred_loss,
                "alignment": alignment, "loss_matrix": matrix}
