"""One interface over GLUE and SQuAD for the train loop: batches in, metrics out.

:func:`load_split` turns (task, source, split) into a :class:`SplitData`: a
:class:`~flatjax.data.batching.Batcher` of fixed-size numpy batches, and a
``score`` function that maps the model's logits (gathered per example /
feature) to the task's metrics. The loop never branches on the task.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any, Callable

import numpy as np

from flatjax import metrics
from flatjax.data import batching, glue, squad
from flatjax.data.tasks import TaskSpec

# Keys a batch carries for the model and the loss (the rest stay on the host).
LOSS_KEYS = ("input_ids", "attention_mask", "token_type_ids", "example_weight",
             "labels", "start_positions", "end_positions")


@dataclasses.dataclass
class SplitData:
  """A tokenized split: its batcher, its size, and how to score logits on it.

  ``score(outputs)`` takes the eval step's outputs batch by batch, as a list
  of ``(example_index, {name: logits})`` pairs (``example_index`` -1 marks a
  padding row): ``logits`` [B, C] for GLUE, ``start_logits`` and
  ``end_logits`` [B, L] for SQuAD.

  ``per_example(outputs)`` gives the same outputs example by example in dataset
  order, so that two models can be compared example by example (a paired
  bootstrap): one digit per example for classification, ``{"labels": "0110...",
  "predictions": "0100..."}``; for SQuAD each question's score under the task's
  main metric (F1), in points (4 decimals), ``{"labels": None, "predictions": [66.6667,
  0.0, ...]}``, whose mean is that metric; None for regression.
  """
  task: TaskSpec
  split: str
  batcher: batching.Batcher
  num_examples: int
  source: str
  score: Callable[[list[tuple[np.ndarray, dict[str, np.ndarray]]]], dict[str, float]]
  per_example: Callable[[list], dict[str, str] | None] = lambda outputs: None

  @property
  def num_rows(self) -> int:
    """Rows the batcher indexes: examples (GLUE) or windows (SQuAD)."""
    return len(self.batcher.encoded)


@dataclasses.dataclass
class SquadFeatures:
  """SQuAD windows, already padded to ``max_length``, in the shape Batcher cuts."""
  task: TaskSpec
  arrays: dict[str, np.ndarray]
  max_length: int
  pad_token_id: int = 0

  def __len__(self) -> int:
    return len(self.arrays["input_ids"])

  @property
  def lengths(self) -> np.ndarray:
    return self.arrays["attention_mask"].sum(axis=1).astype(np.int32)


class SquadBatcher(batching.Batcher):
  """:class:`Batcher` over fixed-length SQuAD windows, trimmed to the batch's
  longest window like GLUE batches; carries start/end positions."""

  def make_batch(self, indices: np.ndarray) -> dict[str, np.ndarray]:
    indices = np.asarray(indices, dtype=np.int64)
    rows, length, n = self.batch_size, self.seq_len(indices), len(indices)
    out = {}
    for key in ("input_ids", "token_type_ids", "attention_mask",
                "start_positions", "end_positions"):
      src = self.encoded.arrays[key]
      shape = (rows, length) if src.ndim == 2 else (rows,)
      buf = np.zeros(shape, np.int32)
      buf[:n] = src[indices][:, :length] if src.ndim == 2 else src[indices]
      out[key] = buf
    out["example_weight"] = np.zeros((rows,), np.float32)
    out["example_weight"][:n] = 1.0
    out["example_index"] = np.full((rows,), -1, np.int32)
    out["example_index"][:n] = indices
    return out


def load_split(task: TaskSpec, tokenizer: Any, source: Any, split: str, *, batch_size: int,
               max_length: int, shuffle: bool, seed: int = 0,
               max_examples: int | None = None, pad_to: str = "longest",
               doc_stride: int = 128) -> SplitData:
  """Loads, tokenizes and batches one split of ``task`` (GLUE or SQuAD)."""
  if task.kind == "span":
    return _load_squad(task, tokenizer, source, split, batch_size=batch_size,
                       max_length=max_length, shuffle=shuffle, seed=seed,
                       max_examples=max_examples, pad_to=pad_to, doc_stride=doc_stride)
  examples = glue.load_glue(task, source, split, max_examples=max_examples, seed=seed)
  encoded = batching.tokenize_examples(tokenizer, examples, max_length)
  batcher = batching.Batcher(encoded, batch_size, shuffle=shuffle, seed=seed, pad_to=pad_to,
                             max_length=max_length, pad_token_id=encoded.pad_token_id)
  labels = encoded.labels

  def score(outputs) -> dict[str, float]:
    return metrics.task_metrics(task, gather(outputs, "logits", len(labels)), labels)

  def per_example(outputs) -> dict[str, str] | None:
    if task.kind != "classification" or task.num_labels > 10:
      return None
    predicted = gather(outputs, "logits", len(labels)).argmax(axis=-1)
    return {"labels": digits(labels), "predictions": digits(predicted)}
  return SplitData(task, split, batcher, len(examples), examples.source, score, per_example)


def digits(values: Any) -> str:
  """Class ids 0-9 as one string, ``[0, 1, 1] -> "011"``: a dev set's labels or
  predictions in a few hundred bytes of JSON."""
  values = np.asarray(values, np.int64)
  if values.size and (values.min() < 0 or values.max() > 9):
    raise ValueError("digits: class ids must be 0-9")
  return (values.astype(np.uint8) + ord("0")).tobytes().decode()


def load_eval_splits(task: TaskSpec, tokenizer: Any, source: Any, **kwargs) -> list[SplitData]:
  """Every evaluation split of ``task`` (``load_split`` arguments, ``shuffle`` off).

  The first split is required. A later one (MNLI's mismatched set) that a local
  folder lacks is left out with a warning, so a folder with only the matched
  ``validation`` file (e.g. a hub-schema subset) still evaluates.
  """
  out = []
  for i, split in enumerate(task.eval_splits):
    try:
      out.append(load_split(task, tokenizer, source, split, shuffle=False, **kwargs))
    except glue.MissingSplitError as e:
      if i == 0:
        raise
      warnings.warn(f"{e}; evaluating without {split}", stacklevel=2)
  return out


def _load_squad(task, tokenizer, source, split, *, batch_size, max_length, shuffle, seed,
                max_examples, pad_to, doc_stride) -> SplitData:
  examples = squad.load_squad(source, split, max_examples=max_examples, seed=seed)
  training = split == "train"
  prepare = squad.prepare_train_features if training else squad.prepare_eval_features
  features = prepare(tokenizer, examples, max_length=max_length, stride=doc_stride)
  arrays = {k: v for k, v in features.items() if isinstance(v, np.ndarray)}
  pad_id = tokenizer.pad_token_id or 0
  batcher = SquadBatcher(SquadFeatures(task, arrays, max_length, pad_id), batch_size,
                         shuffle=shuffle, seed=seed, pad_to=pad_to, max_length=max_length,
                         pad_token_id=pad_id)
  references = {ex["id"]: list(ex["answers"]["text"]) for ex in examples}

  def answers(outputs) -> dict[str, str]:
    # Logits come back trimmed to each batch's length; offsets span max_length.
    start, end = (gather(outputs, k, len(arrays["input_ids"]), width=max_length)
                  for k in ("start_logits", "end_logits"))
    return squad.postprocess_predictions(examples, features, start, end)

  def score(outputs) -> dict[str, float]:
    return metrics.task_metrics(task, answers(outputs), references)

  def per_example(outputs) -> dict[str, Any]:
    scores = metrics.squad_per_question(answers(outputs), references)[task.main_metric]
    return {"labels": None, "predictions": [round(float(x), 4) for x in scores]}
  source_name = str(source) if source is not None else task.hub_name
  return SplitData(task, split, batcher, len(examples), source_name, score, per_example)


def gather(outputs: list[tuple[np.ndarray, dict[str, np.ndarray]]], key: str, n: int,
           width: int | None = None) -> np.ndarray:
  """Per-batch ``outputs[key]`` -> one array in row order, padding rows dropped.

  With ``width``, per-token logits are padded (with -1e9, never the argmax)
  from each batch's length to ``width``; a row never seen is an error.
  """
  first = outputs[0][1][key]
  shape = (n, width) if width is not None else (n, *first.shape[1:])
  out = np.full(shape, -1e9 if width is not None else np.nan, np.float32)
  seen = np.zeros(n, bool)
  for index, batch in outputs:
    real = index >= 0
    values = np.asarray(batch[key])[real]
    if width is not None:
      out[index[real], :values.shape[1]] = values[:, :width]
    else:
      out[index[real]] = values
    seen[index[real]] = True
  if not seen.all():
    raise ValueError(f"{int((~seen).sum())} of {n} rows got no {key}")
  return out
