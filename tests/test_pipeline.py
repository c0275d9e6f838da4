"""pipeline: every evaluation split (MNLI's mismatched set optional locally), and the
per-example predictions a split gives back in dataset order."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import write_sst2
from flatjax.data import glue, pipeline
from flatjax.data.glue import MissingSplitError
from flatjax.data.tasks import get_task
from flatjax.models import pretrained


def _mnli_rows(n: int):
  pairs = [("A man is eating.", "Someone eats.", 0), ("A dog runs.", "A cat sleeps.", 2),
           ("Kids play outside.", "It is raining.", 1)]
  return [{"premise": p, "hypothesis": h, "label": y, "idx": i}
          for i, (p, h, y) in enumerate(pairs * n)]


def _write(path, rows):
  path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture(scope="module")
def tokenizer(minilm_dir):
  return pretrained.load_tokenizer(minilm_dir)


def test_mnli_folder_with_only_matched_validation(tmp_path, tokenizer):
  # The hub-schema subsets hold train.jsonl and validation.jsonl (matched) only.
  _write(tmp_path / "train.jsonl", _mnli_rows(4))
  _write(tmp_path / "validation.jsonl", _mnli_rows(2))
  with pytest.warns(UserWarning, match="without validation_mismatched"):
    splits = pipeline.load_eval_splits(get_task("mnli"), tokenizer, str(tmp_path),
                                       batch_size=4, max_length=32)
  assert [s.split for s in splits] == ["validation_matched"]
  assert splits[0].num_examples == 6


def test_mnli_both_validation_sets(tmp_path, tokenizer):
  _write(tmp_path / "validation_matched.jsonl", _mnli_rows(2))
  _write(tmp_path / "validation_mismatched.jsonl", _mnli_rows(1))
  splits = pipeline.load_eval_splits(get_task("mnli"), tokenizer, str(tmp_path),
                                     batch_size=4, max_length=32)
  assert [(s.split, s.num_examples) for s in splits] == [
      ("validation_matched", 6), ("validation_mismatched", 3)]


def test_the_first_split_is_required(tmp_path, tokenizer):
  _write(tmp_path / "validation_mismatched.jsonl", _mnli_rows(1))
  with pytest.raises(MissingSplitError, match="validation_matched"):
    pipeline.load_eval_splits(get_task("mnli"), tokenizer, str(tmp_path), batch_size=4,
                              max_length=32)


def test_digits_writes_one_character_per_class_id():
  assert pipeline.digits([0, 1, 1, 2, 0]) == "01120"
  assert pipeline.digits([]) == ""
  with pytest.raises(ValueError, match="0-9"):
    pipeline.digits([3, 10])


def test_per_example_is_labels_and_argmax_in_dataset_order(tmp_path, tokenizer):
  """Two batches given out of order come back in dataset order: the argmax of
  each row's logits, padding rows (index -1) dropped."""
  data = write_sst2(tmp_path / "sst2", n_train=4, n_dev=5)
  split = pipeline.load_split(get_task("sst2"), tokenizer, str(data), "validation",
                              batch_size=4, max_length=16, shuffle=False)
  labels = glue.load_glue(get_task("sst2"), str(data), "validation").labels
  logits = np.array([[0.0, 1.0], [2.0, 0.0], [0.0, 3.0], [1.0, 0.0], [0.1, 0.2]], np.float32)
  outputs = [(np.array([4, -1, -1, -1]), {"logits": np.vstack([logits[4:], np.zeros((3, 2))])}),
             (np.array([0, 1, 2, 3]), {"logits": logits[:4]})]
  assert split.per_example(outputs) == {
      "labels": "".join(str(int(v)) for v in labels), "predictions": "10101"}
