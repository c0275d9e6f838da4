"""Tests for flatjax.data.glue: every source layout, and every kind of bad input.

Fixtures are small hand-written files; expected texts and label ids below are
written out by hand from the fixtures, not taken from the loader.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from flatjax.data import glue
from flatjax.data.glue import load_glue
from flatjax.data.tasks import get_task
from flatjax.errors import FlatjaxInputError


def write(path, text: str, encoding: str = "utf-8", newline: str = "\n"):
  """Writes ``text`` (lines joined by "\\n") exactly, creating parent folders."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w", encoding=encoding, newline="") as f:
    f.write(text.replace("\n", newline))
  return str(path)


def tsv(*rows) -> str:
  return "".join("\t".join(r) + "\n" for r in rows)


def raises_input_error(fn, *args, match_all=(), **kwargs) -> str:
  """Calls ``fn`` expecting a one-line FlatjaxInputError containing each of ``match_all``."""
  with pytest.raises(FlatjaxInputError) as info:
    fn(*args, **kwargs)
  msg = str(info.value)
  assert "\n" not in msg, msg
  for part in match_all:
    assert part in msg, f"{part!r} not in {msg!r}"
  return msg


# ----------------------------------------------------------------------------
# Classic GLUE TSV layouts.
# ----------------------------------------------------------------------------

def test_cola_headerless(tmp_path):
  path = write(tmp_path / "CoLA" / "train.tsv", tsv(
      ("gj04", "1", "", "Our friends won't buy this analysis, let alone the next one."),
      ("gj04", "0", "*", 'The "more we study verbs, the crazier they get.'),
      ("cj99", "1", "", "Day by day the facts are getting murkier."),
  ))
  ex = load_glue("cola", tmp_path, "train")
  assert len(ex) == 3
  assert ex.text_a == ["Our friends won't buy this analysis, let alone the next one.",
                       'The "more we study verbs, the crazier they get.',
                       "Day by day the facts are getting murkier."]
  assert ex.text_b is None
  assert ex.labels.dtype == np.int32
  assert ex.labels.tolist() == [1, 0, 1]
  assert ex.source == path


def test_sst2_header_and_stray_quotes(tmp_path):
  write(tmp_path / "SST-2" / "dev.tsv", tsv(
      ("sentence", "label"),
      ("it 's a charming and often affecting journey . ", "1"),
      ('" unflinchingly bleak and desperate ', "0"),
  ))
  ex = load_glue("SST-2", tmp_path / "SST-2", "validation")
  assert ex.text_a == ["it 's a charming and often affecting journey . ",
                       '" unflinchingly bleak and desperate ']
  assert ex.text_b is None
  assert ex.labels.tolist() == [1, 0]


def test_mrpc_quality_is_label(tmp_path):
  write(tmp_path / "MRPC" / "train.tsv", tsv(
      ("Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"),
      ("1", "702876", "702977", 'Amrozi accused his brother, "the witness".',
       '"the witness, Amrozi accused his brother.'),
      ("0", "2108705", "2108831", "Yucaipa owned Dominick's.", "Yucaipa bought Dominick's."),
  ))
  ex = load_glue("mrpc", tmp_path, "train")
  assert ex.text_a == ['Amrozi accused his brother, "the witness".', "Yucaipa owned Dominick's."]
  assert ex.text_b == ['"the witness, Amrozi accused his brother.', "Yucaipa bought Dominick's."]
  assert ex.labels.tolist() == [1, 0]


def test_qqp(tmp_path):
  write(tmp_path / "QQP" / "dev.tsv", tsv(
      ("id", "qid1", "qid2", "question1", "question2", "is_duplicate"),
      ("201359", "303345", "303346", "Why are African-Americans so beautiful?",
       "Why are hispanics so beautiful?", "0"),
      ("263843", "69383", "380476", "I want to pursue PhD in CS. Where?",
       "How do I pursue a PhD in CS?", "1"),
  ))
  ex = load_glue("qqp", tmp_path, "validation")
  assert ex.text_a[1] == "I want to pursue PhD in CS. Where?"
  assert ex.text_b[0] == "Why are hispanics so beautiful?"
  assert ex.labels.tolist() == [0, 1]


STSB_HEADER = ("index", "genre", "filename", "year", "old_index", "source1", "source2",
               "sentence1", "sentence2", "score")


def test_stsb_ten_columns_float_scores(tmp_path):
  write(tmp_path / "STS-B" / "train.tsv", tsv(
      STSB_HEADER,
      ("0", "main-captions", "MSRvid", "2012test", "0001", "none", "none",
       "A plane is taking off.", "An air plane is taking off.", "5.000"),
      ("1", "main-captions", "MSRvid", "2012test", "0004", "none", "none",
       "A man is playing a flute.", "A man is playing a bamboo flute.", "3.800"),
      ("2", "main-news", "MSRvid", "2012test", "0005", "none", "none",
       "A cat sits.", "Stocks fell.", "0"),
  ))
  ex = load_glue("stsb", tmp_path, "train")
  assert ex.labels.dtype == np.float32
  np.testing.assert_allclose(ex.labels, [5.0, 3.8, 0.0], rtol=1e-6)
  assert ex.text_a[0] == "A plane is taking off."
  assert ex.text_b[1] == "A man is playing a bamboo flute."


MNLI_TRAIN_HEADER = ("index", "promptID", "pairID", "genre", "sentence1_binary_parse",
                     "sentence2_binary_parse", "sentence1_parse", "sentence2_parse",
                     "sentence1", "sentence2", "label1", "gold_label")
MNLI_DEV_HEADER = MNLI_TRAIN_HEADER[:11] + ("label2", "label3", "label4", "label5", "gold_label")


def _mnli_row(i, s1, s2, gold, dev):
  labels = (gold,) * (5 if dev else 1)
  return (str(i), "31193", f"{i}n", "government", "( ( x ) )", "( y )", "(ROOT x)", "(ROOT y)",
          s1, s2) + labels + (gold,)


@pytest.fixture
def mnli_folder(tmp_path):
  folder = tmp_path / "glue_data" / "MNLI"
  write(folder / "train.tsv", tsv(
      MNLI_TRAIN_HEADER,
      _mnli_row(0, "Conceptually cream skimming has two dimensions.",
                "Product and geography are what make cream skimming work.", "neutral", False),
      _mnli_row(1, "you know during the season", "You lose the things.", "entailment", False),
      _mnli_row(2, "One of our number will carry out your instructions.",
                "A member of my team will execute your orders.", "contradiction", False),
  ))
  write(folder / "dev_matched.tsv", tsv(
      MNLI_DEV_HEADER,
      _mnli_row(0, "The new rights are nice enough", "Everyone really likes them.", "neutral",
                True),
      _mnli_row(1, "This site includes a list.", "The Government publishes it.", "contradiction",
                True),
  ))
  write(folder / "dev_mismatched.tsv", tsv(
      MNLI_DEV_HEADER,
      _mnli_row(0, "Your contribution helped.", "Your contribution helped.", "entailment", True),
  ))
  return tmp_path / "glue_data"


def test_mnli_train_twelve_columns(mnli_folder):
  ex = load_glue("mnli", mnli_folder, "train")
  assert ex.labels.tolist() == [1, 0, 2]     # neutral, entailment, contradiction
  assert ex.text_a[1] == "you know during the season"
  assert ex.text_b[2] == "A member of my team will execute your orders."


def test_mnli_dev_sixteen_columns_and_split_names(mnli_folder):
  matched = load_glue("mnli", mnli_folder, "validation_matched")
  assert matched.labels.tolist() == [1, 2]
  assert matched.text_b == ["Everyone really likes them.", "The Government publishes it."]
  assert matched.source.endswith("dev_matched.tsv")
  # "validation" means matched for MNLI.
  assert load_glue("mnli", mnli_folder, "validation").labels.tolist() == [1, 2]
  mismatched = load_glue("mnli", mnli_folder / "MNLI", "validation_mismatched")
  assert mismatched.labels.tolist() == [0]
  assert mismatched.source.endswith("dev_mismatched.tsv")


def test_qnli_and_rte_string_labels(tmp_path):
  write(tmp_path / "QNLI" / "dev.tsv", tsv(
      ("index", "question", "sentence", "label"),
      ("0", "What came into force?", "The new constitution came into force.", "entailment"),
      ("1", "What is the first city?", "The Ill is below Strasbourg.", "not_entailment"),
  ))
  write(tmp_path / "RTE" / "train.tsv", tsv(
      ("index", "sentence1", "sentence2", "label"),
      ("0", "No Weapons Found in Iraq Yet.", "Weapons Found in Iraq.", "not_entailment"),
      ("1", "A place of sorrow.", "Pope Benedict XVI is the new leader.", "entailment"),
      ("2", "Herceptin was approved.", "Herceptin can be used.", "entailment"),
  ))
  qnli = load_glue("qnli", tmp_path, "validation")
  assert qnli.text_a == ["What came into force?", "What is the first city?"]
  assert qnli.text_b[0] == "The new constitution came into force."
  assert qnli.labels.tolist() == [0, 1]
  rte = load_glue(get_task("rte"), str(tmp_path), "train")
  assert rte.labels.tolist() == [1, 0, 0]
  assert rte.text_b[1] == "Pope Benedict XVI is the new leader."


def test_tsv_crlf_bom_and_trailing_blank_line(tmp_path):
  path = write(tmp_path / "train.tsv",
               "\ufeffsentence\tlabel\na fine film \t1\nawful \t0\n\n", newline="\r\n")
  ex = load_glue("sst2", path)
  assert ex.text_a == ["a fine film ", "awful "]
  assert ex.labels.tolist() == [1, 0]


def test_direct_tsv_file_ignores_split(tmp_path):
  path = write(tmp_path / "whatever.tsv", tsv(("sentence", "label"), ("good", "1")))
  assert load_glue("sst2", path, split="validation").labels.tolist() == [1]


# ----------------------------------------------------------------------------
# Hub-schema files.
# ----------------------------------------------------------------------------

def test_jsonl_folder_and_task_subfolder(tmp_path):
  lines = [
      {"premise": "Salt kept the town fed.", "hypothesis": "Salt kept it thriving.",
       "label": 0, "idx": 0},
      {"premise": "P two", "hypothesis": "H two", "label": "contradiction", "idx": 1},
      {"premise": "P three", "hypothesis": "H three", "label": "1", "idx": 2},
  ]
  write(tmp_path / "subsets" / "mnli" / "train.jsonl",
        "".join(json.dumps(r) + "\n" for r in lines))
  write(tmp_path / "subsets" / "mnli" / "validation.jsonl",
        json.dumps({"premise": "a", "hypothesis": "b", "label": 2}) + "\n")
  ex = load_glue("mnli", tmp_path / "subsets", "train")     # finds the mnli/ subfolder
  assert ex.text_a == ["Salt kept the town fed.", "P two", "P three"]
  assert ex.text_b == ["Salt kept it thriving.", "H two", "H three"]
  assert ex.labels.tolist() == [0, 2, 1]
  # MNLI's validation.jsonl serves "validation" and "validation_matched".
  assert load_glue("mnli", tmp_path / "subsets" / "mnli", "validation").labels.tolist() == [2]
  assert load_glue("mnli", tmp_path / "subsets", "validation_matched").labels.tolist() == [2]


def test_json_extension_and_json_array(tmp_path):
  write(tmp_path / "a" / "validation.json",
        '{"sentence": "one", "label": 1}\n{"sentence": "two", "label": "negative"}\n')
  assert load_glue("sst2", tmp_path / "a", "validation").labels.tolist() == [1, 0]
  path = write(tmp_path / "b.json",
               '[\n {"sentence": "x", "label": 0},\n {"sentence": "y", "label": 1.0}\n]\n')
  ex = load_glue("sst2", path)
  assert ex.text_a == ["x", "y"]
  assert ex.labels.tolist() == [0, 1]


def test_csv_with_quoted_commas_and_newlines(tmp_path):
  write(tmp_path / "train.csv",
        'sentence1,sentence2,label,idx\n'
        '"Hello, world","multi\nline",equivalent,0\n'
        'plain,text,0,1\n')
  ex = load_glue("mrpc", tmp_path, "train")
  assert ex.text_a == ["Hello, world", "plain"]
  assert ex.text_b == ["multi\nline", "text"]
  assert ex.labels.tolist() == [1, 0]


def test_parquet(tmp_path):
  import pyarrow as pa
  import pyarrow.parquet as pq
  table = pa.table({"sentence1": ["s1 a", "s1 b"], "sentence2": ["s2 a", "s2 b"],
                    "label": [2.5, 4.25], "idx": [0, 1]})
  pq.write_table(table, tmp_path / "validation.parquet")
  ex = load_glue("stsb", tmp_path, "validation")
  assert ex.text_a == ["s1 a", "s1 b"]
  assert ex.text_b == ["s2 a", "s2 b"]
  assert ex.labels.dtype == np.float32
  np.testing.assert_allclose(ex.labels, [2.5, 4.25])
  # A direct file path works too.
  assert len(load_glue("stsb", tmp_path / "validation.parquet")) == 2


# ----------------------------------------------------------------------------
# The hub (datasets.load_dataset patched: no network here).
# ----------------------------------------------------------------------------

@pytest.fixture
def fake_hub(monkeypatch):
  import datasets
  calls = []

  def load_dataset(name, config=None, **kwargs):
    calls.append((name, config))
    if config == "sst2":
      return datasets.DatasetDict({
          "train": datasets.Dataset.from_dict(
              {"sentence": ["hide new secretions ", "contains no wit "], "label": [0, 0],
               "idx": [0, 1]}),
          "validation": datasets.Dataset.from_dict(
              {"sentence": ["it 's charming ", "bleak "], "label": [1, 0], "idx": [0, 1]}),
          "test": datasets.Dataset.from_dict({"sentence": ["?"], "label": [-1], "idx": [0]}),
      })
    if config == "mnli":
      features = datasets.Features({
          "premise": datasets.Value("string"), "hypothesis": datasets.Value("string"),
          "label": datasets.ClassLabel(names=["entailment", "neutral", "contradiction"]),
          "idx": datasets.Value("int32")})
      def split(n, labels):
        return datasets.Dataset.from_dict(
            {"premise": [f"p{n}{i}" for i in range(len(labels))],
             "hypothesis": [f"h{n}{i}" for i in range(len(labels))],
             "label": labels, "idx": list(range(len(labels)))}, features=features)
      return datasets.DatasetDict({
          "train": split("t", [2, 1, 0]), "validation_matched": split("m", [1]),
          "validation_mismatched": split("x", [0, 2])})
    if config == "stsb":
      # Some callers get a bare Dataset back (e.g. with split=...).
      return datasets.Dataset.from_dict(
          {"sentence1": ["a"], "sentence2": ["b"], "label": [3.2], "idx": [0]})
    if config == "rte":
      return datasets.DatasetDict({"train": datasets.Dataset.from_dict(
          {"sentence1": ["a", "b"], "sentence2": ["c", "d"], "label": [1, -1]})})
    raise ConnectionError(f"Couldn't reach '{name}' on the Hub (LocalEntryNotFoundError)\nmore")

  monkeypatch.setattr(datasets, "load_dataset", load_dataset)
  return calls


def test_hub_default_name_and_splits(fake_hub):
  ex = load_glue("sst2")
  assert fake_hub == [("nyu-mll/glue", "sst2")]
  assert ex.text_a == ["hide new secretions ", "contains no wit "]
  assert ex.labels.tolist() == [0, 0]
  assert ex.labels.dtype == np.int32
  assert "nyu-mll/glue" in ex.source
  assert load_glue("sst2", "glue", "validation").labels.tolist() == [1, 0]
  assert fake_hub[-1] == ("glue", "sst2")


def test_hub_mnli_classlabel_and_validation_alias(fake_hub):
  train = load_glue("mnli", "nyu-mll/glue", "train")
  assert train.text_a == ["pt0", "pt1", "pt2"] and train.text_b == ["ht0", "ht1", "ht2"]
  assert train.labels.tolist() == [2, 1, 0]
  assert load_glue("mnli", None, "validation").text_a == ["pm0"]
  assert load_glue("mnli", None, "validation_mismatched").labels.tolist() == [0, 2]


def test_hub_bare_dataset_regression(fake_hub):
  ex = load_glue("stsb", None, "train")
  assert ex.labels.dtype == np.float32
  np.testing.assert_allclose(ex.labels, [3.2], rtol=1e-6)


def test_hub_unlabelled_rows_raise(fake_hub):
  raises_input_error(load_glue, "rte", None, "train", match_all=("label -1", "row 1"))


def test_hub_unreachable_suggests_local_folder(fake_hub):
  msg = raises_input_error(load_glue, "qqp", "nyu-mll/glue", "train",
                           match_all=("nyu-mll/glue", "ConnectionError", "local"))
  assert "more" not in msg     # only the first line of the cause


def test_hub_missing_split(fake_hub):
  raises_input_error(load_glue, "rte", None, "validation",
                     match_all=("no split 'validation'", "train"))


# ----------------------------------------------------------------------------
# max_examples.
# ----------------------------------------------------------------------------

def test_max_examples_seeded_subset_in_file_order(tmp_path):
  # Label i % 2 and text "s{i}" let the test check texts and labels stay paired.
  rows = [(f"s{i}", str(i % 2)) for i in range(50)]
  path = write(tmp_path / "train.tsv", tsv(("sentence", "label"), *rows))
  sub = load_glue("sst2", path, max_examples=10, seed=3)
  assert len(sub) == 10
  idx = [int(t[1:]) for t in sub.text_a]
  assert idx == sorted(idx) and len(set(idx)) == 10
  assert sub.labels.tolist() == [i % 2 for i in idx]
  expected = sorted(np.random.default_rng(3).choice(50, 10, replace=False).tolist())
  assert idx == expected
  assert load_glue("sst2", path, max_examples=10, seed=3).text_a == sub.text_a
  assert load_glue("sst2", path, max_examples=10, seed=4).text_a != sub.text_a
  assert len(load_glue("sst2", path, max_examples=500)) == 50
  raises_input_error(load_glue, "sst2", path, max_examples=0, match_all=("max_examples",))


# ----------------------------------------------------------------------------
# Bad input: each message names the file (and line).
# ----------------------------------------------------------------------------

def test_missing_folder(tmp_path, monkeypatch, fake_hub):
  missing = tmp_path / "nope"
  raises_input_error(load_glue, "sst2", missing, match_all=(str(missing), "not found"))
  raises_input_error(load_glue, "sst2", str(missing / "train.jsonl"),
                     match_all=("train.jsonl", "not found"))
  # "data/sst2" where a local data/ exists is a path, missing: the hub is never asked.
  monkeypatch.chdir(tmp_path)
  (tmp_path / "data").mkdir()
  raises_input_error(load_glue, "sst2", "data/sst2", match_all=("data/sst2", "not found"))
  assert fake_hub == []


def test_missing_split_file_names_expected_file(tmp_path):
  write(tmp_path / "RTE" / "train.tsv", tsv(("index", "sentence1", "sentence2", "label")))
  raises_input_error(load_glue, "rte", tmp_path, "validation",
                     match_all=("dev.tsv", "validation.jsonl", str(tmp_path / "RTE")))
  raises_input_error(load_glue, "mnli", tmp_path, "validation_mismatched",
                     match_all=("dev_mismatched.tsv", "MNLI/"))


def test_unknown_format(tmp_path):
  path = write(tmp_path / "train.txt", "sentence\tlabel\nok\t1\n")
  raises_input_error(load_glue, "sst2", path, match_all=("unknown file format", "train.txt"))


def test_unknown_split_and_task(tmp_path):
  raises_input_error(load_glue, "sst2", tmp_path, "test", match_all=("unknown split 'test'",))
  raises_input_error(load_glue, "squad", tmp_path, match_all=("squad",))
  raises_input_error(load_glue, "glurp", tmp_path, match_all=("unknown task",))


def test_tsv_wrong_column_count(tmp_path):
  path = write(tmp_path / "train.tsv", tsv(
      ("index", "sentence1", "sentence2", "label"),
      ("0", "a", "b", "entailment"),
      ("1", "a", "b\tc", "entailment"),     # an extra tab: 5 columns on line 3
  ))
  raises_input_error(load_glue, "rte", path, match_all=(f"{path}:3", "5", "expected 4"))


def test_cola_wrong_column_count(tmp_path):
  path = write(tmp_path / "CoLA" / "train.tsv",
               tsv(("gj04", "1", "", "ok"), ("gj04", "1", "ok")))
  raises_input_error(load_glue, "cola", tmp_path, match_all=(f"{path}:2", "expected 4"))


def test_tsv_header_missing_column(tmp_path):
  path = write(tmp_path / "train.tsv",
               tsv(("index", "question", "sentence", "lbl"), ("0", "q", "s", "1")))
  raises_input_error(load_glue, "qnli", path, match_all=(f"{path}:1", "'label'"))


def test_label_name_outside_task(tmp_path):
  path = write(tmp_path / "train.tsv", tsv(
      ("index", "sentence1", "sentence2", "label"),
      *[(str(i), "a", "b", "entailment") for i in range(5)],
      ("5", "a", "b", "maybe"),             # line 7
  ))
  msg = raises_input_error(load_glue, "rte", path)
  assert msg.startswith(f"label 'maybe' at {path}:7 is not one of entailment, not_entailment")


def test_label_id_outside_task_jsonl(tmp_path):
  path = write(tmp_path / "train.jsonl",
               '{"sentence1": "a", "sentence2": "b", "label": 1}\n'
               '\n'
               '{"sentence1": "a", "sentence2": "b", "label": 5}\n')
  raises_input_error(load_glue, "mrpc", path, match_all=(f"{path}:3", "label 5", "0..1"))


def test_label_true_and_fractional_rejected(tmp_path):
  path = write(tmp_path / "train.jsonl", '{"sentence": "a", "label": true}\n')
  raises_input_error(load_glue, "sst2", path, match_all=(f"{path}:1",))
  path = write(tmp_path / "validation.jsonl", '{"sentence": "a", "label": 0.5}\n')
  raises_input_error(load_glue, "sst2", path, match_all=(f"{path}:1", "0.5"))


def test_missing_field_jsonl(tmp_path):
  path = write(tmp_path / "train.jsonl",
               '{"question": "q", "sentence": "s", "label": 0}\n'
               '{"question": "q", "label": 1}\n')
  raises_input_error(load_glue, "qnli", path, match_all=(f"{path}:2", "'sentence'"))


def test_null_text_jsonl(tmp_path):
  path = write(tmp_path / "train.jsonl", '{"sentence": null, "label": 0}\n')
  raises_input_error(load_glue, "sst2", path, match_all=(f"{path}:1", "'sentence'"))


def test_unparsable_json(tmp_path):
  path = write(tmp_path / "train.jsonl",
               '{"sentence": "a", "label": 0}\n{"sentence": "b", "label": 1\n')
  raises_input_error(load_glue, "sst2", path, match_all=(f"{path}:2", "invalid JSON"))


def test_non_numeric_score(tmp_path):
  row = ("1", "g", "f", "y", "o", "none", "none", "s1", "s2")
  path = write(tmp_path / "STS-B" / "dev.tsv", tsv(STSB_HEADER, row + ("4.5",), row + ("high",)))
  raises_input_error(load_glue, "stsb", tmp_path, "validation",
                     match_all=(f"{path}:3", "'high'", "not a number"))


def test_score_out_of_range(tmp_path):
  path = write(tmp_path / "train.jsonl", '{"sentence1": "a", "sentence2": "b", "label": -1}\n')
  raises_input_error(load_glue, "stsb", path, match_all=(f"{path}:1", "outside 0..5"))


def test_empty_and_header_only_files(tmp_path):
  path = write(tmp_path / "SST-2" / "train.tsv", "")
  raises_input_error(load_glue, "sst2", tmp_path, match_all=(path, "empty"))
  path = write(tmp_path / "SST-2" / "train.tsv", "sentence\tlabel\n")
  raises_input_error(load_glue, "sst2", tmp_path, match_all=(path, "no examples"))
  path = write(tmp_path / "x.jsonl", "\n\n")
  raises_input_error(load_glue, "sst2", path, match_all=(path, "no examples"))


def test_csv_wrong_column_count(tmp_path):
  path = write(tmp_path / "train.csv", "sentence,label\ngood,1\nbad,0,extra\n")
  raises_input_error(load_glue, "sst2", path, match_all=(f"{path}:3", "expected 2"))


def test_csv_missing_column(tmp_path):
  path = write(tmp_path / "train.csv", "text,label\ngood,1\n")
  raises_input_error(load_glue, "sst2", path, match_all=(path, "'sentence'"))


def test_parquet_bad_file_and_missing_column(tmp_path):
  import pyarrow as pa
  import pyarrow.parquet as pq
  path = write(tmp_path / "train.parquet", "not parquet at all")
  raises_input_error(load_glue, "sst2", path, match_all=(path, "Parquet"))
  pq.write_table(pa.table({"sentence": ["a", "b"], "label": [0, 7]}), tmp_path / "v.parquet")
  raises_input_error(load_glue, "sst2", tmp_path / "v.parquet",
                     match_all=("v.parquet row 2", "label 7"))
  pq.write_table(pa.table({"text": ["a"], "label": [0]}), tmp_path / "w.parquet")
  raises_input_error(load_glue, "sst2", tmp_path / "w.parquet",
                     match_all=("w.parquet", "'sentence'"))


def test_invalid_utf8_reports_line(tmp_path):
  path = tmp_path / "train.tsv"
  path.write_bytes(b"sentence\tlabel\nfine\t1\nbad \xff byte\t0\n")
  raises_input_error(load_glue, "sst2", path, match_all=(f"{path}:3", "UTF-8"))


def test_every_glue_task_spec_has_its_folder_and_tsv_layout():
  from flatjax.data.tasks import TASKS
  glue_tasks = {"cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte"}
  assert {t.name for t in TASKS.values() if t.glue_folder} == glue_tasks
  assert {t.name for t in TASKS.values() if t.tsv is not None} == glue_tasks
  assert TASKS["sst2"].glue_folder == "SST-2" and TASKS["stsb"].glue_folder == "STS-B"
