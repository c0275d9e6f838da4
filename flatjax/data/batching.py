"""Tokenization and fixed-shape, reproducible batches for fine-tuning.

Sequences are tokenized once, unpadded (:func:`tokenize_examples`). A
:class:`Batcher` then pads each batch only as far as it needs, rounded up to a
multiple of 8 so a jitted step sees a handful of shapes instead of one per
length. Every batch has exactly ``batch_size`` rows: the last, short batch is
filled with all-padding rows of weight 0, so it neither triggers a recompile
nor counts in a loss or metric that weights rows by ``example_weight``.

The order of epoch ``e`` depends only on ``(seed, e)``, and ``epoch(e, start=k)``
yields exactly batches ``k, k+1, ...`` of ``epoch(e)``, so a run resumed from a
checkpoint mid-epoch sees the same data as one that never stopped.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterator

import numpy as np

from flatjax.data.glue import TextExamples
from flatjax.data.tasks import TaskSpec
from flatjax.errors import FlatjaxInputError

PAD_MODES = ("longest", "max_length")

# Texts handed to the tokenizer per call: bounds the Python lists it returns
# (MNLI has 393k pairs) while keeping its Rust-side batching efficient.
_TOKENIZE_CHUNK = 8192


@dataclasses.dataclass
class EncodedExamples:
  """Tokenized, unpadded examples: one int32 array per example."""
  task: TaskSpec
  input_ids: list[np.ndarray]
  token_type_ids: list[np.ndarray]
  labels: np.ndarray          # int32 class ids, or float32 scores (regression)
  max_length: int             # the truncation length used
  pad_token_id: int = 0       # the tokenizer's; pass it on to Batcher
  source: str = ""

  def __len__(self) -> int:
    return len(self.input_ids)

  @property
  def lengths(self) -> np.ndarray:
    """Tokens per example (int32), special tokens included."""
    return np.fromiter((len(x) for x in self.input_ids), dtype=np.int32,
                       count=len(self.input_ids))


def tokenize_examples(tokenizer: Any, examples: TextExamples, max_length: int) -> EncodedExamples:
  """Tokenizes text (pairs) with ``[CLS] a [SEP] (b [SEP])``, truncated, unpadded.

  Pairs are truncated longest-first, as BERT's GLUE fine-tuning does, so a long
  premise does not push the whole hypothesis out.
  """
  pair = examples.text_b is not None
  specials = tokenizer.num_special_tokens_to_add(pair=pair)
  if not isinstance(max_length, (int, np.integer)) or max_length <= specials:
    # Below this the tokenizer cannot fit even the special tokens and silently
    # returns over-long sequences.
    raise FlatjaxInputError(
        f"max_length must be an integer above {specials} (the special tokens), got {max_length!r}")
  model_max = getattr(tokenizer, "model_max_length", None)
  if model_max is not None and model_max < 10**6 and max_length > model_max:
    # The model has no position embeddings beyond model_max_length.
    raise FlatjaxInputError(
        f"max_length {max_length} exceeds the tokenizer's model_max_length {model_max}")
  input_ids: list[np.ndarray] = []
  token_type_ids: list[np.ndarray] = []
  for lo in range(0, len(examples), _TOKENIZE_CHUNK):
    hi = lo + _TOKENIZE_CHUNK
    enc = tokenizer(
        examples.text_a[lo:hi], examples.text_b[lo:hi] if pair else None,
        truncation="longest_first" if pair else True, max_length=int(max_length),
        padding=False, return_token_type_ids=True, return_attention_mask=True)
    input_ids.extend(np.asarray(x, dtype=np.int32) for x in enc["input_ids"])
    token_type_ids.extend(np.asarray(x, dtype=np.int32) for x in enc["token_type_ids"])
  pad = tokenizer.pad_token_id
  label_dtype = np.float32 if examples.task.is_regression else np.int32
  return EncodedExamples(
      task=examples.task, input_ids=input_ids, token_type_ids=token_type_ids,
      labels=np.asarray(examples.labels, dtype=label_dtype), max_length=int(max_length),
      pad_token_id=0 if pad is None else int(pad), source=examples.source)


def _round_up(n: int, multiple: int) -> int:
  return -(-n // multiple) * multiple


class Batcher:
  """Cuts :class:`EncodedExamples` into fixed-size, padded numpy batches.

  Each batch is a dict of ``input_ids``, ``token_type_ids``, ``attention_mask``
  (int32 ``[batch_size, L]``), ``labels`` (``[batch_size]``, the examples'
  dtype), ``example_weight`` (float32, 1 for real rows, 0 for padding rows) and
  ``example_index`` (int32 index into ``encoded``, -1 for padding rows).

  ``L`` is, for ``pad_to="longest"``, the batch's longest sequence rounded up
  to ``pad_to_multiple_of`` (capped at ``max_length`` if given); for
  ``pad_to="max_length"``, ``max_length`` (default: ``encoded.max_length``).
  """

  def __init__(self, encoded: EncodedExamples, batch_size: int, *, shuffle: bool,
               seed: int = 0, pad_to: str = "longest", max_length: int | None = None,
               pad_to_multiple_of: int = 8, pad_token_id: int = 0):
    if not isinstance(batch_size, (int, np.integer)) or batch_size <= 0:
      raise FlatjaxInputError(f"batch_size must be a positive integer, got {batch_size!r}")
    if pad_to not in PAD_MODES:
      raise FlatjaxInputError(f"pad_to must be one of {', '.join(PAD_MODES)}, got {pad_to!r}")
    if pad_to_multiple_of < 1:
      raise FlatjaxInputError(f"pad_to_multiple_of must be at least 1, got {pad_to_multiple_of}")
    if seed < 0:
      # np.random.default_rng([seed, epoch]) takes non-negative entropy only.
      raise FlatjaxInputError(f"seed must be non-negative, got {seed}")
    if pad_to == "max_length" and max_length is None:
      max_length = encoded.max_length
    self.encoded = encoded
    self.batch_size = int(batch_size)
    self.shuffle = shuffle
    self.seed = int(seed)
    self.pad_to = pad_to
    self.max_length = max_length
    self.pad_to_multiple_of = int(pad_to_multiple_of)
    self.pad_token_id = int(pad_token_id)
    self._lengths = encoded.lengths
    if max_length is not None and len(encoded) and self._lengths.max() > max_length:
      # Cutting here would drop the final [SEP]; truncation belongs to the tokenizer.
      raise FlatjaxInputError(
          f"max_length {max_length} is below the longest tokenized example "
          f"({self._lengths.max()} tokens); tokenize with max_length <= {max_length}")

  @property
  def num_batches(self) -> int:
    """Batches per epoch: ceil(n / batch_size); the last, short one is kept."""
    return -(-len(self.encoded) // self.batch_size)

  def __len__(self) -> int:
    return self.num_batches

  def order(self, epoch: int) -> np.ndarray:
    """The example order of ``epoch``: a permutation fixed by (seed, epoch), or identity."""
    n = len(self.encoded)
    if not self.shuffle:
      return np.arange(n)
    return np.random.default_rng([self.seed, int(epoch)]).permutation(n)

  def epoch(self, epoch: int, start: int = 0) -> Iterator[dict[str, np.ndarray]]:
    """Yields batches ``start, start+1, ...`` of ``epoch`` (see the class docstring)."""
    if epoch < 0:
      raise FlatjaxInputError(f"epoch must be non-negative, got {epoch}")
    if not 0 <= start <= self.num_batches:
      raise FlatjaxInputError(
          f"start batch {start} is outside 0..{self.num_batches} (batches per epoch); "
          "was the run resumed with a different batch size or data set?")
    return self._batches(self.order(epoch), start)

  def _batches(self, order: np.ndarray, start: int) -> Iterator[dict[str, np.ndarray]]:
    for b in range(start, self.num_batches):
      yield self.make_batch(order[b * self.batch_size:(b + 1) * self.batch_size])

  def seq_len(self, indices: np.ndarray) -> int:
    """The padded length L of a batch holding examples ``indices``."""
    if self.pad_to == "max_length":
      return int(self.max_length)
    longest = int(self._lengths[indices].max()) if len(indices) else 1
    length = _round_up(longest, self.pad_to_multiple_of)
    return length if self.max_length is None else min(length, int(self.max_length))

  def make_batch(self, indices: np.ndarray) -> dict[str, np.ndarray]:
    """One batch of the examples ``indices`` (at most batch_size), padded to batch_size rows."""
    indices = np.asarray(indices, dtype=np.int64)
    if len(indices) > self.batch_size:
      raise ValueError(f"{len(indices)} examples do not fit a batch of {self.batch_size}")
    rows, length = self.batch_size, self.seq_len(indices)
    enc = self.encoded
    input_ids = np.full((rows, length), self.pad_token_id, dtype=np.int32)
    token_type_ids = np.zeros((rows, length), dtype=np.int32)
    attention_mask = np.zeros((rows, length), dtype=np.int32)
    for row, i in enumerate(indices):
      n = len(enc.input_ids[i])
      input_ids[row, :n] = enc.input_ids[i]
      token_type_ids[row, :n] = enc.token_type_ids[i]
      attention_mask[row, :n] = 1
    labels = np.zeros((rows,), dtype=enc.labels.dtype)
    labels[:len(indices)] = enc.labels[indices]
    example_weight = np.zeros((rows,), dtype=np.float32)
    example_weight[:len(indices)] = 1.0
    example_index = np.full((rows,), -1, dtype=np.int32)
    example_index[:len(indices)] = indices
    return {"input_ids": input_ids, "token_type_ids": token_type_ids,
            "attention_mask": attention_mask, "labels": labels,
            "example_weight": example_weight, "example_index": example_index}
