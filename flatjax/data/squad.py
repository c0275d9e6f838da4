"""SQuAD v1.1 (Rajpurkar et al. 2016) for BERT span extraction.

Loading, tokenisation into sliding windows and turning start/end logits back
into answer strings follow HF transformers'
``examples/pytorch/question-answering/run_qa.py`` and its
``utils_qa.postprocess_qa_predictions`` (the v1.1 path, question first and
padding on the right), so the scores are comparable with the usual BERT
fine-tuning numbers; the scores themselves come from
:func:`flatjax.metrics.squad_scores`.

Examples use the hub schema of ``rajpurkar/squad``::

  {"id": str, "title": str, "context": str, "question": str,
   "answers": {"text": [str, ...], "answer_start": [int, ...]}}
"""

from __future__ import annotations

import collections
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, TypedDict

import numpy as np

from flatjax import jsonl
from flatjax.data.glue import looks_like_hub_name
from flatjax.data.tasks import get_task
from flatjax.errors import FlatjaxInputError

HUB_NAME = get_task("squad").hub_name
_HUB_ALIASES = {"squad": HUB_NAME, "rajpurkar/squad": HUB_NAME}
_SPLITS = {"train": "train", "validation": "validation", "dev": "validation"}
# File names tried, in order, when ``source`` is a folder.
_SPLIT_FILES = {
    "train": ("train.json", "train.jsonl"),
    "validation": ("dev.json", "validation.json", "dev.jsonl", "validation.jsonl"),
}
# Examples tokenised per tokenizer call: bounds the memory held by the
# Python-level offset lists of a BatchEncoding on the full 88k-question train set.
_CHUNK = 1000


class SquadAnswers(TypedDict):
  text: list[str]
  answer_start: list[int]  # character offset of each text in the context


class SquadExample(TypedDict):
  id: str
  title: str
  context: str
  question: str
  answers: SquadAnswers


# --------------------------------------------------------------------------
# Loading.
# --------------------------------------------------------------------------


def _short(s: str, n: int = 60) -> str:
  """repr of ``s`` cut to ``n`` characters: keeps error messages on one line."""
  return repr(s if len(s) <= n else s[:n] + "...")


def _first_line(e: BaseException) -> str:
  text = str(e).strip()
  return text.splitlines()[0] if text else type(e).__name__


def _check_example(ex: Any, where: str, require_answers: bool) -> SquadExample:
  """Validates one hub-schema record; returns it with ``title`` defaulted."""
  if not isinstance(ex, Mapping):
    raise FlatjaxInputError(f"{where}: expected an object, got {type(ex).__name__}")
  for key in ("id", "context", "question", "answers"):
    if key not in ex:
      raise FlatjaxInputError(f"{where}: missing field {key!r}")
  qid = ex["id"]
  if not isinstance(qid, str) or not qid:
    raise FlatjaxInputError(f"{where}: 'id' must be a non-empty string, got {qid!r}")
  where = f"{where}: question {qid!r}"
  for key in ("context", "question"):
    if not isinstance(ex[key], str):
      raise FlatjaxInputError(f"{where}: {key!r} must be a string")
  title = ex.get("title", "")
  if not isinstance(title, str):
    raise FlatjaxInputError(f"{where}: 'title' must be a string")
  answers = ex["answers"]
  if (not isinstance(answers, Mapping) or not isinstance(answers.get("text"), list)
      or not isinstance(answers.get("answer_start"), list)):
    raise FlatjaxInputError(
        f"{where}: 'answers' must be {{\"text\": [...], \"answer_start\": [...]}}")
  texts, starts = answers["text"], answers["answer_start"]
  if len(texts) != len(starts):
    raise FlatjaxInputError(
        f"{where}: {len(texts)} answer texts but {len(starts)} answer_start values")
  if require_answers and not texts:
    raise FlatjaxInputError(
        f"{where}: no answers, but every training question needs one "
        "(SQuAD 2.0 unanswerable questions are not supported)")
  context = ex["context"]
  for text, start in zip(texts, starts):
    if not isinstance(text, str) or not text:
      raise FlatjaxInputError(f"{where}: answer text must be a non-empty string, got {text!r}")
    if not isinstance(start, int) or isinstance(start, bool):
      raise FlatjaxInputError(f"{where}: answer_start must be an integer, got {start!r}")
    found = context[start:start + len(text)] if start >= 0 else ""
    if found != text:
      raise FlatjaxInputError(
          f"{where}: answer_start {start} does not point to the answer {_short(text)} "
          f"in the context (the context there reads {_short(found)})")
  return SquadExample(id=qid, title=title, context=context, question=ex["question"],
                      answers=SquadAnswers(text=list(texts), answer_start=list(starts)))


def _read_text(path: str) -> str:
  try:
    with open(path, encoding="utf-8") as f:
      return f.read()
  except FileNotFoundError:
    raise FlatjaxInputError(f"{path}: no such file") from None
  except (OSError, UnicodeDecodeError) as e:
    raise FlatjaxInputError(f"{path}: cannot read: {_first_line(e)}") from None


def _read_squad_json(path: str, require_answers: bool) -> list[SquadExample]:
  """Reads the official nested v1.1 layout data -> paragraphs -> qas."""
  try:
    doc = json.loads(_read_text(path))
  except json.JSONDecodeError as e:
    raise FlatjaxInputError(
        f"{path}: not valid JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
  if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
    raise FlatjaxInputError(
        f"{path}: not a SQuAD v1.1 file (expected an object with a 'data' list of articles)")
  examples = []
  for a, article in enumerate(doc["data"]):
    loc = f"{path}: data[{a}]"
    if not isinstance(article, dict) or not isinstance(article.get("paragraphs"), list):
      raise FlatjaxInputError(f"{loc}: an article needs a 'paragraphs' list")
    title = article.get("title", "")
    for p, paragraph in enumerate(article["paragraphs"]):
      ploc = f"{loc}.paragraphs[{p}]"
      if (not isinstance(paragraph, dict) or not isinstance(paragraph.get("qas"), list)
          or "context" not in paragraph):
        raise FlatjaxInputError(f"{ploc}: a paragraph needs 'context' and a 'qas' list")
      for q, qa in enumerate(paragraph["qas"]):
        qloc = f"{ploc}.qas[{q}]"
        if not isinstance(qa, dict):
          raise FlatjaxInputError(f"{qloc}: expected an object")
        raw_answers = qa.get("answers", [])
        if not isinstance(raw_answers, list) or not all(
            isinstance(x, dict) and "text" in x and "answer_start" in x for x in raw_answers):
          raise FlatjaxInputError(
              f"{qloc} (question {qa.get('id')!r}): 'answers' must be a list of "
              "{\"text\", \"answer_start\"} objects")
        record = {
            "title": title,
            "context": paragraph["context"],
            "answers": {"text": [x["text"] for x in raw_answers],
                        "answer_start": [x["answer_start"] for x in raw_answers]},
        }
        for key in ("id", "question"):
          if key in qa:
            record[key] = qa[key]
        examples.append(_check_example(record, qloc, require_answers))
  return examples


def _read_jsonl(path: str, require_answers: bool) -> list[SquadExample]:
  """Reads one hub-schema record per line; blank lines are skipped."""
  examples = []
  for lineno, record in jsonl.records(_read_text(path).splitlines(), path):
    examples.append(_check_example(record, f"{path}:{lineno}", require_answers))
  return examples


def _read_file(path: str, require_answers: bool) -> list[SquadExample]:
  if path.endswith(".jsonl"):
    return _read_jsonl(path, require_answers)
  return _read_squad_json(path, require_answers)


def _read_hub(name: str, split: str, require_answers: bool) -> list[SquadExample]:
  hub_name = _HUB_ALIASES.get(name.lower(), name)
  try:
    import datasets  # imported here: local files must not need the hub stack
    rows = datasets.load_dataset(hub_name, split=split).to_list()
  except Exception as e:  # network, missing dataset, unknown split...: one line for the CLI
    raise FlatjaxInputError(
        f"could not load {hub_name!r} (split {split!r}) from the Hugging Face hub, and there "
        f"is no local file or folder of that name: {type(e).__name__}: {_first_line(e)}"
    ) from None
  return [_check_example(row, f"{hub_name}[{split}] row {i}", require_answers)
          for i, row in enumerate(rows)]


def load_squad(source: str | os.PathLike | None = None, split: str = "train",
               max_examples: int | None = None, seed: int = 0) -> list[SquadExample]:
  """Loads SQuAD v1.1 questions as hub-schema records, validated.

  Args:
    source: one of
      * a SQuAD v1.1 JSON file (``{"version", "data": [{"title", "paragraphs":
        [{"context", "qas": [{"id", "question", "answers": [{"text",
        "answer_start"}]}]}]}]}``), or a ``.jsonl`` file of hub-schema records;
      * a folder holding ``train.json`` and ``dev.json`` (or ``validation.json``;
        ``.jsonl`` versions also accepted), picked by ``split``;
      * ``None`` or a hub name (``"squad"``, ``"rajpurkar/squad"``): loaded with
        ``datasets.load_dataset``.
    split: ``"train"`` or ``"validation"`` (alias ``"dev"``). For a single
      file it only decides whether every question must have an answer.
    max_examples: keep a seeded random subset of this many questions, in
      their original order (``sort(rng.choice(n, max_examples, replace=False))``).
    seed: seed of that subset.

  Returns:
    The questions as :class:`SquadExample` dicts, in file order.

  Raises:
    FlatjaxInputError: unknown split, missing or unreadable file, bad JSON, a
      malformed record, duplicate ids, a training question without answers or
      an ``answer_start`` that does not point at its answer text; the message
      names the file and the question.
  """
  split_key = _SPLITS.get(str(split).lower())
  if split_key is None:
    raise FlatjaxInputError(
        f"unknown SQuAD split {split!r}; use 'train' or 'validation' (or 'dev')")
  require_answers = split_key == "train"

  if source is None:
    source = HUB_NAME
  if (isinstance(source, os.PathLike)
      or not looks_like_hub_name(str(source), (".json", ".jsonl"))
      or os.path.exists(os.path.expanduser(str(source)))):
    path = os.path.expanduser(os.fspath(source))
    if os.path.isdir(path):
      candidates = [os.path.join(path, n) for n in _SPLIT_FILES[split_key]]
      found = [c for c in candidates if os.path.isfile(c)]
      if not found:
        raise FlatjaxInputError(
            f"{path}: no {' or '.join(_SPLIT_FILES[split_key])} for split {split!r}")
      path = found[0]
    elif not os.path.exists(path):
      raise FlatjaxInputError(f"{path}: no such file or folder")
    where, examples = path, _read_file(path, require_answers)
  else:
    where, examples = str(source), _read_hub(str(source), split_key, require_answers)

  if not examples:
    raise FlatjaxInputError(f"{where}: no questions")
  seen = set()
  for ex in examples:
    if ex["id"] in seen:
      # Ids key the predictions; a duplicate would silently merge two questions.
      raise FlatjaxInputError(f"{where}: question id {ex['id']!r} appears more than once")
    seen.add(ex["id"])

  if max_examples is not None:
    if isinstance(max_examples, bool) or not isinstance(max_examples, (int, np.integer)) \
        or max_examples < 1:
      raise FlatjaxInputError(f"max_examples must be a positive integer, got {max_examples!r}")
    if max_examples < len(examples):
      rng = np.random.default_rng(seed)
      keep = np.sort(rng.choice(len(examples), size=int(max_examples), replace=False))
      examples = [examples[i] for i in keep]
  return examples


# --------------------------------------------------------------------------
# Tokenisation into overlapping windows.
# --------------------------------------------------------------------------


def _check_window(tokenizer: Any, examples: Sequence[SquadExample], questions: list[str],
                  max_length: int, stride: int) -> None:
  """Fails early, naming the question, where the fast tokenizer would panic.

  With ``truncation="only_second"`` each window holds ``max_length - specials
  - len(question)`` context tokens and the Rust tokenizer aborts (a
  PanicException, not an Exception) unless that exceeds ``stride``.
  """
  if not isinstance(max_length, (int, np.integer)) or max_length < 1:
    raise FlatjaxInputError(f"max_length must be a positive integer, got {max_length!r}")
  if not isinstance(stride, (int, np.integer)) or stride < 0:
    raise FlatjaxInputError(f"stride must be a non-negative integer, got {stride!r}")
  n_special = tokenizer.num_special_tokens_to_add(pair=True)
  for start in range(0, len(questions), _CHUNK):
    ids = tokenizer(questions[start:start + _CHUNK], add_special_tokens=False)["input_ids"]
    for j, q_ids in enumerate(ids):
      room = max_length - n_special - len(q_ids)
      if room <= stride:
        raise FlatjaxInputError(
            f"question {examples[start + j]['id']!r} is {len(q_ids)} tokens long, leaving "
            f"{room} context tokens per window at max_length={max_length}, which must be "
            f"more than stride={stride}; raise max_length or lower stride")


def _encode(tokenizer: Any, examples: Sequence[SquadExample], max_length: int,
            stride: int) -> Iterator[tuple[int, Any]]:
  """Yields ``(first example index, BatchEncoding)`` per chunk of examples."""
  # run_qa strips the questions' leading whitespace: some SQuAD questions
  # start with many spaces, which waste window room for nothing.
  questions = [ex["question"].lstrip() for ex in examples]
  _check_window(tokenizer, examples, questions, max_length, stride)
  for start in range(0, len(examples), _CHUNK):
    chunk = examples[start:start + _CHUNK]
    yield start, tokenizer(
        questions[start:start + _CHUNK],
        [ex["context"] for ex in chunk],
        truncation="only_second",
        max_length=max_length,
        stride=stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        padding="max_length",
    )


def _answer_span(input_ids: list[int], sequence_ids: list[int | None],
                 offsets: list[tuple[int, int]], answers: SquadAnswers,
                 cls_index: int) -> tuple[int, int]:
  """Token start/end of the first answer in this window, run_qa's way.

  A window that does not hold the whole answer is labelled ``(cls, cls)``;
  otherwise start is the last context token starting at or before the
  answer's first character, end the first token ending at or after its last.
  """
  if not answers["answer_start"]:
    return cls_index, cls_index
  start_char = answers["answer_start"][0]
  end_char = start_char + len(answers["text"][0])
  token_start = 0
  while sequence_ids[token_start] != 1:
    token_start += 1
  token_end = len(input_ids) - 1
  while sequence_ids[token_end] != 1:
    token_end -= 1
  if not (offsets[token_start][0] <= start_char and offsets[token_end][1] >= end_char):
    return cls_index, cls_index
  while token_start < len(offsets) and offsets[token_start][0] <= start_char:
    token_start += 1
  while offsets[token_end][1] >= end_char:
    token_end -= 1
  return token_start - 1, token_end + 1


def _featurize(tokenizer: Any, examples: Sequence[SquadExample], max_length: int,
               stride: int, keep_offsets: bool) -> dict[str, Any]:
  cols = collections.defaultdict(list)
  for base, enc in _encode(tokenizer, examples, max_length, stride):
    sample_mapping = enc["overflow_to_sample_mapping"]
    has_types = "token_type_ids" in enc
    for i, input_ids in enumerate(enc["input_ids"]):
      example_index = base + sample_mapping[i]
      sequence_ids = enc.sequence_ids(i)
      offsets = enc["offset_mapping"][i]
      cls_index = (input_ids.index(tokenizer.cls_token_id)
                   if tokenizer.cls_token_id in input_ids else 0)
      start, end = _answer_span(input_ids, sequence_ids, offsets,
                                examples[example_index]["answers"], cls_index)
      cols["input_ids"].append(input_ids)
      cols["token_type_ids"].append(enc["token_type_ids"][i] if has_types
                                    else [0] * len(input_ids))
      cols["attention_mask"].append(enc["attention_mask"][i])
      cols["start_positions"].append(start)
      cols["end_positions"].append(end)
      if keep_offsets:
        cols["example_index"].append(example_index)
        # Only context tokens can be part of an answer; None marks the rest
        # (question, special and padding tokens) for postprocess_predictions.
        cols["offset_mapping"].append(
            [tuple(o) if s == 1 else None for o, s in zip(offsets, sequence_ids)])
  out: dict[str, Any] = {}
  for key in ("input_ids", "token_type_ids", "attention_mask"):
    out[key] = np.asarray(cols[key], dtype=np.int32).reshape(-1, max_length)
  for key in ("start_positions", "end_positions") + (("example_index",) if keep_offsets else ()):
    out[key] = np.asarray(cols[key], dtype=np.int32)
  if keep_offsets:
    out["offset_mapping"] = cols["offset_mapping"]
  return out


def prepare_train_features(tokenizer: Any, examples: Sequence[SquadExample],
                           max_length: int = 384, stride: int = 128) -> dict[str, np.ndarray]:
  """Tokenises (question, context) pairs into overlapping windows with labels.

  As run_qa.py: the question comes first and the context is cut into windows
  of ``max_length`` tokens that overlap by ``stride`` tokens
  (``truncation="only_second"``, ``return_overflowing_tokens=True``), each
  padded on the right to ``max_length``. ``start_positions``/``end_positions``
  are the token indices of the first gold answer, or the [CLS] index (0) in a
  window that does not contain all of it.

  Args:
    tokenizer: a fast HF tokenizer (offsets are needed).
    examples: :class:`SquadExample` records, e.g. from :func:`load_squad`.
    max_length: tokens per window.
    stride: tokens shared by consecutive windows.

  Returns:
    ``input_ids``, ``token_type_ids``, ``attention_mask`` (int32
    ``[num_features, max_length]``), ``start_positions``, ``end_positions``
    (int32 ``[num_features]``). A long context gives several features.
  """
  return _featurize(tokenizer, examples, max_length, stride, keep_offsets=False)


def prepare_eval_features(tokenizer: Any, examples: Sequence[SquadExample],
                          max_length: int = 384, stride: int = 128) -> dict[str, Any]:
  """:func:`prepare_train_features` plus what is needed to map logits back to text.

  Returns:
    The same arrays (positions are available for an evaluation loss), plus
    ``example_index`` (int32 ``[num_features]``: index in ``examples`` of
    each feature) and ``offset_mapping`` (a list per feature of ``(start,
    end)`` character offsets into the context, ``None`` for tokens that are
    not context tokens).
  """
  return _featurize(tokenizer, examples, max_length, stride, keep_offsets=True)


# --------------------------------------------------------------------------
# Logits -> answer text.
# --------------------------------------------------------------------------


def _top_indices(logits: np.ndarray, n: int) -> np.ndarray:
  # The n largest, best first: the reversed ascending argsort of utils_qa
  # (stable, so ties resolve the same way on every run).
  return np.argsort(logits, kind="stable")[::-1][:n]


def postprocess_predictions(examples: Sequence[SquadExample], features: Mapping[str, Any],
                            start_logits: Any, end_logits: Any, n_best_size: int = 20,
                            max_answer_length: int = 30) -> dict[str, str]:
  """Best answer text per question from per-window start/end logits.

  utils_qa.postprocess_qa_predictions for SQuAD v1.1: in every window of a
  question, the ``n_best_size`` highest start and end logits are paired; a
  pair is dropped if either token is outside the window's offsets or not a
  context token, if ``end < start`` or if it spans more than
  ``max_answer_length`` tokens. The surviving pair with the highest
  ``start_logit + end_logit`` over all windows (the first one on ties) gives
  ``context[offsets[start][0]:offsets[end][1]]``.

  Unlike utils_qa, which answers the literal string "empty" when no pair
  survives, the answer is then ``""`` (it scores 0 either way).

  Args:
    examples: the questions, in the order used by :func:`prepare_eval_features`.
    features: its output (``example_index`` and ``offset_mapping`` are used).
    start_logits, end_logits: ``[num_features, seq_len]`` arrays.
    n_best_size: start and end candidates kept per window.
    max_answer_length: longest answer, in tokens.

  Returns:
    question id -> predicted answer text, for every example.
  """
  for key in ("example_index", "offset_mapping"):
    if key not in features:
      raise ValueError(f"features lack {key!r}: use prepare_eval_features")
  start_logits = np.asarray(start_logits)
  end_logits = np.asarray(end_logits)
  example_index = np.asarray(features["example_index"])
  offset_mapping = features["offset_mapping"]
  n_features = example_index.shape[0]
  if start_logits.ndim != 2 or start_logits.shape != end_logits.shape \
      or start_logits.shape[0] != n_features:
    raise ValueError(
        f"expected start/end logits of shape [{n_features}, seq_len], got "
        f"{start_logits.shape} and {end_logits.shape}")

  features_per_example = collections.defaultdict(list)
  for f, e in enumerate(example_index.tolist()):
    features_per_example[e].append(f)

  predictions = {}
  for e, example in enumerate(examples):
    best_score, best_offsets = None, None
    for f in features_per_example.get(e, ()):
      offsets = offset_mapping[f]
      is_context = np.array([o is not None for o in offsets], dtype=bool)
      starts = _top_indices(start_logits[f], n_best_size)
      ends = _top_indices(end_logits[f], n_best_size)
      ok_start = (starts < len(offsets)) & is_context[np.minimum(starts, len(offsets) - 1)]
      ok_end = (ends < len(offsets)) & is_context[np.minimum(ends, len(offsets) - 1)]
      length = ends[None, :] - starts[:, None] + 1
      valid = ok_start[:, None] & ok_end[None, :] & (length >= 1) & (length <= max_answer_length)
      candidates = np.flatnonzero(valid)  # row-major: start rank, then end rank
      if candidates.size == 0:
        continue
      scores = (start_logits[f][starts][:, None] + end_logits[f][ends][None, :]).ravel()
      k = candidates[np.argmax(scores[candidates])]
      score = scores[k]
      if best_score is None or score > best_score:
        s, t = starts[k // ends.size], ends[k % ends.size]
        best_score, best_offsets = score, (offsets[s][0], offsets[t][1])
    predictions[example["id"]] = (
        "" if best_offsets is None else example["context"][best_offsets[0]:best_offsets[1]])
  return predictions
