"""pipeline.load_eval_splits: every evaluation split, MNLI's mismatched set optional locally."""

from __future__ import annotations

import json

import pytest

from flatjax.data import pipeline
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
