"""Loads a GLUE task's examples from the hub or from local files.

Three kinds of source are understood, all giving the same :class:`TextExamples`
with labels in the hub's ids (``nyu-mll/glue``):

* a hub dataset name (default ``nyu-mll/glue``), read with
  ``datasets.load_dataset(name, task)``;
* a classic GLUE TSV folder (``glue_data/`` or one task's folder such as
  ``glue_data/SST-2``), parsed with each task's own column layout;
* files in the hub's schema: a folder holding ``{split}.jsonl`` / ``.json`` /
  ``.csv`` / ``.parquet``, or one such file.

Every problem with the input becomes a :class:`FlatjaxInputError` whose one-line
message names the file and line, so a bad row in a 400k-row file can be found.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import re
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from flatjax import jsonl
from flatjax.data.tasks import TaskSpec, get_task
from flatjax.errors import FlatjaxInputError

# Hub-schema file formats, in the order tried when a folder holds several.
HUB_FILE_FORMATS = (".jsonl", ".json", ".parquet", ".csv")

# STS-B similarity scores are defined on 0..5; the hub marks unlabelled rows -1.
STSB_SCORE_RANGE = (0.0, 5.0)


@dataclasses.dataclass
class TextExamples:
  """One split of a task as raw text plus labels in the hub's ids."""
  task: TaskSpec
  text_a: list[str]
  text_b: list[str] | None    # None for single-sentence tasks (cola, sst2)
  labels: np.ndarray          # int32 class ids, or float32 scores for stsb
  source: str                 # human-readable: the file path or hub name it came from

  def __len__(self) -> int:
    return len(self.text_a)


# ----------------------------------------------------------------------------
# Labels and rows.
# ----------------------------------------------------------------------------

def _label_choices(task: TaskSpec) -> str:
  return ", ".join(task.label_names)


def parse_label(task: TaskSpec, value: Any, where: str) -> int | float:
  """Turns one raw label into the hub's id (classification) or a float score.

  Accepts ids (``1``, ``"1"``, ``1.0``) and, for classification, the label's
  name (``"entailment"``), because GLUE TSVs and hand-made files use both.
  ``where`` (``path:line``) goes into the error message.
  """
  if isinstance(value, bool) or value is None:
    # bool is an int subclass; True as a label id is almost surely a mistake.
    raise FlatjaxInputError(f"missing or invalid label {value!r} at {where}")
  if task.is_regression:
    return _parse_score(value, where)
  num = len(task.label_names)
  if isinstance(value, str):
    text = value.strip()
    if text in task.label_names:
      return task.label_names.index(text)
    if not re.fullmatch(r"[+-]?\d+", text):
      raise FlatjaxInputError(
          f"label {value!r} at {where} is not one of {_label_choices(task)} "
          f"(or an id 0..{num - 1})")
    value = int(text)
  elif isinstance(value, (float, np.floating)):
    if not float(value).is_integer():
      raise FlatjaxInputError(f"label {value!r} at {where} is not an integer class id")
    value = int(value)
  elif isinstance(value, (int, np.integer)):
    value = int(value)
  else:
    raise FlatjaxInputError(f"label {value!r} at {where} is neither a class id nor a name")
  if value == -1:
    # The hub writes -1 for the unlabelled test split.
    raise FlatjaxInputError(
        f"label -1 at {where}: the example is unlabelled (a test split?); "
        "only labelled splits (train, validation) can be loaded")
  if not 0 <= value < num:
    raise FlatjaxInputError(
        f"label {value} at {where} is not a class id of {task.name} "
        f"(0..{num - 1}: {_label_choices(task)})")
  return value


def _parse_score(value: Any, where: str) -> float:
  """A float STS-B score in 0..5."""
  try:
    score = float(value.strip() if isinstance(value, str) else value)
  except (TypeError, ValueError):
    raise FlatjaxInputError(f"score {value!r} at {where} is not a number") from None
  lo, hi = STSB_SCORE_RANGE
  if not math.isfinite(score) or not lo <= score <= hi:
    raise FlatjaxInputError(
        f"score {value!r} at {where} is outside {lo:g}..{hi:g} "
        "(-1 marks an unlabelled test example)")
  return score


def _text(value: Any, name: str, where: str) -> str:
  if value is None:
    raise FlatjaxInputError(f"missing field {name!r} at {where}")
  if not isinstance(value, str):
    raise FlatjaxInputError(f"field {name!r} at {where} is {type(value).__name__}, not text")
  return value


class _Collector:
  """Accumulates (texts, label) rows for one task, checking each as it comes."""

  def __init__(self, task: TaskSpec):
    self.task = task
    self.text_a: list[str] = []
    self.text_b: list[str] = []
    self.labels: list[int | float] = []

  def add_record(self, record: Any, where: str) -> None:
    """Adds one hub-schema record (a dict with task.text_keys and "label")."""
    if not isinstance(record, dict):
      raise FlatjaxInputError(
          f"row at {where} is a JSON {type(record).__name__}, expected an object with "
          f"fields {', '.join(self.task.text_keys + ('label',))}")
    for key in self.task.text_keys + ("label",):
      if key not in record:
        raise FlatjaxInputError(f"missing field {key!r} at {where}")
    self.add([record[k] for k in self.task.text_keys], record["label"], where)

  def add(self, texts: Sequence[Any], label: Any, where: str) -> None:
    names = self.task.text_keys
    self.text_a.append(_text(texts[0], names[0], where))
    if len(names) > 1:
      self.text_b.append(_text(texts[1], names[1], where))
    self.labels.append(parse_label(self.task, label, where))

  def finish(self, source: str) -> TextExamples:
    if not self.labels:
      raise FlatjaxInputError(f"{source} holds no examples")
    dtype = np.float32 if self.task.is_regression else np.int32
    return TextExamples(
        task=self.task, text_a=self.text_a,
        text_b=self.text_b if len(self.task.text_keys) > 1 else None,
        labels=np.asarray(self.labels, dtype=dtype), source=source)


# ----------------------------------------------------------------------------
# Reading text files.
# ----------------------------------------------------------------------------

def _decode_error_line(path: str) -> int:
  """The 1-based line holding a file's first invalid UTF-8 byte (error path only)."""
  with open(path, "rb") as f:
    for lineno, raw in enumerate(f, start=1):
      try:
        raw.decode("utf-8")
      except UnicodeDecodeError:
        return lineno
  return 0


def _open_text(path: str):
  # utf-8-sig: files saved by Excel and some editors start with a byte-order mark,
  # which would otherwise stick to the first header name.
  # newline="": lets the csv module see "\r\n" and keeps "\r" out of the last field.
  return open(path, encoding="utf-8-sig", newline="")


def _reraise_decode(path: str, err: UnicodeDecodeError) -> None:
  raise FlatjaxInputError(
      f"{path}:{_decode_error_line(path)} is not valid UTF-8 ({err.reason})") from None


def _csv_rows(path: str, **fmt) -> Iterator[tuple[int, list[str]]]:
  """Yields (line number, fields) of a delimited file, skipping blank lines."""
  try:
    with _open_text(path) as f:
      reader = csv.reader(f, strict=True, **fmt)
      line = 0
      try:
        for row in reader:
          start, line = line + 1, reader.line_num
          if row:     # a blank line, e.g. the trailing one, reads as [].
            yield start, row
      except csv.Error as err:
        raise FlatjaxInputError(f"malformed row at {path}:{reader.line_num}: {err}") from None
  except UnicodeDecodeError as err:
    _reraise_decode(path, err)


def _header_index(header: list[str], names: Sequence[str], path: str) -> list[int]:
  index = {name.strip(): i for i, name in enumerate(header)}
  missing = [n for n in names if n not in index]
  if missing:
    raise FlatjaxInputError(
        f"header of {path}:1 lacks column(s) {', '.join(repr(m) for m in missing)} "
        f"(found: {', '.join(h.strip() for h in header)})")
  return [index[n] for n in names]


def read_glue_tsv(task: TaskSpec, path: str) -> TextExamples:
  """Parses one original GLUE TSV file (``train.tsv``, ``dev.tsv``, ...) of ``task``."""
  layout = task.tsv
  if layout is None:
    raise FlatjaxInputError(f"{task.name} has no GLUE TSV layout; give its data as .jsonl, "
                            ".json, .csv or .parquet (hub schema)")
  out = _Collector(task)
  # QUOTE_NONE: GLUE text has unbalanced quotes ("the witness) that must stay text.
  rows = _csv_rows(path, delimiter="\t", quoting=csv.QUOTE_NONE)
  columns = layout.text_columns + (layout.label_column,)
  width = layout.num_columns
  if layout.has_header:
    first = next(rows, None)
    if first is None:
      raise FlatjaxInputError(f"{path} is empty")
    header = first[1]
    width = len(header)
    columns = _header_index(header, columns, path)
  for line, row in rows:
    where = f"{path}:{line}"
    if len(row) != width:
      raise FlatjaxInputError(
          f"malformed row at {where}: {len(row)} tab-separated columns, expected {width}")
    out.add([row[c] for c in columns[:-1]], row[columns[-1]], where)
  return out.finish(path)


def read_jsonl(task: TaskSpec, path: str) -> TextExamples:
  """Parses hub-schema JSON Lines (or, if the file starts with ``[``, one JSON array)."""
  out = _Collector(task)
  try:
    with _open_text(path) as f:
      first = f.read(1)
      while first and first.isspace():
        first = f.read(1)
      if first == "[":
        f.seek(0)
        try:
          records = json.load(f)
        except json.JSONDecodeError as err:
          raise FlatjaxInputError(f"invalid JSON at {path}:{err.lineno}: {err.msg}") from None
        for i, record in enumerate(records, start=1):
          out.add_record(record, f"{path} item {i}")
        return out.finish(path)
      f.seek(0)
      for lineno, record in jsonl.records(f, path):
        out.add_record(record, f"{path}:{lineno}")
  except UnicodeDecodeError as err:
    _reraise_decode(path, err)
  return out.finish(path)


def read_csv(task: TaskSpec, path: str) -> TextExamples:
  """Parses a hub-schema CSV file (a header naming task.text_keys and ``label``)."""
  out = _Collector(task)
  rows = _csv_rows(path)
  first = next(rows, None)
  if first is None:
    raise FlatjaxInputError(f"{path} is empty")
  header = first[1]
  columns = _header_index(header, task.text_keys + ("label",), path)
  for line, row in rows:
    where = f"{path}:{line}"
    if len(row) != len(header):
      raise FlatjaxInputError(
          f"malformed row at {where}: {len(row)} comma-separated columns, "
          f"expected {len(header)}")
    out.add([row[c] for c in columns[:-1]], row[columns[-1]], where)
  return out.finish(path)


def read_parquet(task: TaskSpec, path: str) -> TextExamples:
  """Parses a hub-schema Parquet file (the hub's own storage format)."""
  import pyarrow as pa  # pylint: disable=g-import-not-at-top
  import pyarrow.parquet as pq  # pylint: disable=g-import-not-at-top
  try:
    table = pq.read_table(path)
  except (pa.ArrowException, OSError) as err:
    raise FlatjaxInputError(f"cannot read {path} as Parquet: {_one_line(err)}") from None
  return _from_columns(task, table.column_names, lambda n: table.column(n).to_pylist(),
                       path, lambda i: f"{path} row {i + 1}")


def _from_columns(task: TaskSpec, names: Sequence[str], column: Callable[[str], list[Any]],
                  source: str, where: Callable[[int], str]) -> TextExamples:
  """Builds examples from hub-schema columns (Parquet, an in-memory hub dataset).

  ``column(name)`` fetches one column as a list, so that only the needed ones
  (not e.g. MNLI's parse trees) are materialised; ``where(i)`` names row i.
  """
  missing = [k for k in task.text_keys + ("label",) if k not in names]
  if missing:
    raise FlatjaxInputError(
        f"{source} lacks column(s) {', '.join(repr(m) for m in missing)} "
        f"(found: {', '.join(names)})")
  out = _Collector(task)
  texts = [column(k) for k in task.text_keys]
  for i, label in enumerate(column("label")):
    out.add([t[i] for t in texts], label, where(i))
  return out.finish(source)


def _one_line(err: BaseException) -> str:
  text = str(err).strip().splitlines()
  return f"{type(err).__name__}: {text[0] if text else ''}".rstrip(": ")


# ----------------------------------------------------------------------------
# Finding the file for a split.
# ----------------------------------------------------------------------------

def _normalize_split(task: TaskSpec, split: str) -> str:
  split = split.strip().lower()
  if split == "dev":
    split = "validation"
  allowed = (task.train_split,) + tuple(task.eval_splits)
  if split == "validation" and split not in allowed:  # MNLI's "validation": its matched set
    split = task.eval_splits[0]
  if split not in allowed:
    raise FlatjaxInputError(
        f"unknown split {split!r} for {task.name}; expected one of {', '.join(allowed)}"
        + (f" (or validation = {task.eval_splits[0]})" if "validation" not in allowed else ""))
  return split


def _tsv_name(task: TaskSpec, split: str) -> str:
  return {"train": "train.tsv", "validation": "dev.tsv",
          "validation_matched": "dev_matched.tsv",
          "validation_mismatched": "dev_mismatched.tsv"}[split]


def _hub_file_stems(task: TaskSpec, split: str) -> tuple[str, ...]:
  # MNLI's "validation" is the matched set; accept either file name for it.
  if split == "validation_matched":
    return ("validation_matched", "validation")
  return (split,)


def _split_candidates(task: TaskSpec, split: str) -> list[str]:
  """File names that may hold ``split`` in a folder, in order of preference."""
  names = [stem + ext for stem in _hub_file_stems(task, split) for ext in HUB_FILE_FORMATS]
  return names + [_tsv_name(task, split)]


def _task_folder(task: TaskSpec, folder: str) -> str:
  """The folder with the task's files: ``folder`` itself or its task subfolder."""
  any_split = [n for s in (task.train_split,) + task.eval_splits
               for n in _split_candidates(task, s)]
  if any(os.path.isfile(os.path.join(folder, n)) for n in any_split):
    return folder
  # glue_data/ names folders "SST-2", "STS-B"; hub-schema exports use "sst2".
  wanted = {(task.glue_folder or task.name).lower(), task.name}
  for entry in sorted(os.listdir(folder)):
    sub = os.path.join(folder, entry)
    if entry.lower() in wanted and os.path.isdir(sub):
      return sub
  return folder


def _read_file(task: TaskSpec, path: str) -> TextExamples:
  lower = path.lower()
  if os.path.getsize(path) == 0:
    raise FlatjaxInputError(f"{path} is empty")
  if lower.endswith(".tsv"):
    return read_glue_tsv(task, path)
  if lower.endswith((".jsonl", ".json")):
    return read_jsonl(task, path)
  if lower.endswith(".csv"):
    return read_csv(task, path)
  if lower.endswith(".parquet"):
    return read_parquet(task, path)
  raise FlatjaxInputError(
      f"unknown file format of {path}: expected .tsv (GLUE layout), .jsonl, .json, .csv "
      "or .parquet (hub schema)")


class MissingSplitError(FlatjaxInputError):
  """A local data folder has no file for the split asked for."""


def _load_local(task: TaskSpec, path: str, split: str) -> TextExamples:
  if os.path.isfile(path):
    return _read_file(task, path)     # a single file: the split is its content
  split = _normalize_split(task, split)
  folder = _task_folder(task, path)
  candidates = _split_candidates(task, split)
  for name in candidates:
    file = os.path.join(folder, name)
    if os.path.isfile(file):
      return _read_file(task, file)
  hint = ""
  own_name = os.path.basename(os.path.normpath(path)).lower()
  named = task.glue_folder or task.name
  if folder == path and own_name not in (named.lower(), task.name):
    hint = f"; nor is there a {named}/ or {task.name}/ subfolder"
  raise MissingSplitError(
      f"no {split} file for {task.name} in {folder}: expected {_tsv_name(task, split)} "
      f"(GLUE layout) or {candidates[0].rsplit('.', 1)[0]}.jsonl/.json/.csv/.parquet "
      f"(hub schema){hint}")


# ----------------------------------------------------------------------------
# The hub.
# ----------------------------------------------------------------------------

_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")


def looks_like_hub_name(source: str, file_suffixes: tuple[str, ...]) -> bool:
  """Whether a data argument that is not on disk names a hub dataset. "./glue",
  "/data/glue" or "x.jsonl" are clearly paths, and so is "data/sst2" where a
  local data/ folder exists: a missing one fails at once, not after the hub's
  retries."""
  first = source.split("/", 1)[0]
  return (bool(_HUB_ID.fullmatch(source))
          and not source.lower().endswith(file_suffixes)
          and not ("/" in source and os.path.isdir(first)))


def _load_hub(task: TaskSpec, name: str, split: str) -> TextExamples:
  split = _normalize_split(task, split)
  import datasets  # pylint: disable=g-import-not-at-top  (slow import; only the hub needs it)
  try:
    loaded = datasets.load_dataset(name, task.name)
  except Exception as err:  # pylint: disable=broad-except
    # Offline, a wrong name and a missing config all surface as different
    # exception types from datasets / huggingface_hub; the user's fix is the same.
    raise FlatjaxInputError(
        f"cannot load {name!r} (config {task.name!r}) from the Hugging Face hub "
        f"({_one_line(err)}); no local folder {name!r} exists either: pass a local GLUE "
        "folder (glue_data/ TSVs, or {split}.jsonl/.csv/.parquet files) instead") from None
  source = f"{name} ({task.name}, {split})"
  if isinstance(loaded, dict):     # a DatasetDict
    key = split if split in loaded else ("validation" if split == "validation_matched"
                                         and "validation" in loaded else None)
    if key is None:
      raise FlatjaxInputError(
          f"hub dataset {name!r} ({task.name}) has no split {split!r}; "
          f"it has {', '.join(loaded)}")
    loaded = loaded[key]
  return _from_columns(task, loaded.column_names, lambda n: list(loaded[n]), source,
                       lambda i: f"{source} row {i}")


# ----------------------------------------------------------------------------
# The entry point.
# ----------------------------------------------------------------------------

def subsample(examples: TextExamples, max_examples: int, seed: int = 0) -> TextExamples:
  """A seeded random subset of ``max_examples`` rows, kept in file order."""
  n = len(examples)
  if max_examples >= n:
    return examples
  keep = np.sort(np.random.default_rng(seed).choice(n, max_examples, replace=False))
  pick = lambda xs: [xs[i] for i in keep]
  return dataclasses.replace(
      examples, text_a=pick(examples.text_a),
      text_b=None if examples.text_b is None else pick(examples.text_b),
      labels=examples.labels[keep],
      source=f"{examples.source} [{max_examples} of {n}, seed {seed}]")


def load_glue(task: str | TaskSpec, source: str | os.PathLike | None = None,
              split: str = "train", max_examples: int | None = None,
              seed: int = 0) -> TextExamples:
  """Loads one split of a GLUE task.

  Args:
    task: a task name (``"sst2"``, ``"SST-2"``, ...) or its :class:`TaskSpec`.
    source: None or a hub dataset name (default ``nyu-mll/glue``); a classic
      GLUE TSV folder (``glue_data/`` or e.g. ``glue_data/SST-2``); a folder of
      hub-schema ``{split}.jsonl|json|csv|parquet`` files; or one such file (or
      one GLUE ``.tsv``), in which case ``split`` is ignored.
    split: ``"train"``, ``"validation"`` (MNLI: ``"validation_matched"`` /
      ``"validation_mismatched"``; ``"validation"`` means matched).
    max_examples: if set and smaller than the split, keep a random subset of
      this size, chosen reproducibly from ``seed`` and kept in file order.
    seed: the subset's seed.

  Raises:
    FlatjaxInputError: on an unknown task or split, a missing or malformed
      file, a label outside the task's set, or an unreachable hub.
  """
  spec = task if isinstance(task, TaskSpec) else get_task(task)
  if spec.kind == "span":
    raise FlatjaxInputError(f"load_glue loads sentence(-pair) tasks; {spec.name!r} is a span "
                            "task (flatjax.data.squad)")
  if max_examples is not None and max_examples <= 0:
    raise FlatjaxInputError(f"max_examples must be positive, got {max_examples}")
  if source is None:
    examples = _load_hub(spec, spec.hub_name, split)
  else:
    path = os.path.expanduser(os.fspath(source))
    if os.path.exists(path):
      examples = _load_local(spec, path, split)
    elif isinstance(source, str) and looks_like_hub_name(source,
                                                         HUB_FILE_FORMATS + (".tsv",)):
      examples = _load_hub(spec, source, split)
    else:
      raise FlatjaxInputError(f"data folder or file not found: {path}")
  if max_examples is not None:
    examples = subsample(examples, max_examples, seed)
  return examples
