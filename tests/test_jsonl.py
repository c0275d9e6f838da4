"""flatjax.jsonl: the result logs' format, checked against hand-written files."""

import pytest

from flatjax import jsonl


def test_read_skips_blank_lines_and_keeps_order(tmp_path):
  path = tmp_path / "rows.jsonl"
  path.write_text('{"round": 0, "metric": 80.5}\n\n{"round": 1, "metric": 79.25}\n  \n')
  assert jsonl.read(path) == [{"round": 0, "metric": 80.5}, {"round": 1, "metric": 79.25}]


def test_missing_file_is_empty_unless_required(tmp_path):
  assert jsonl.read(tmp_path / "none.jsonl") == []
  with pytest.raises(FileNotFoundError):
    jsonl.read(tmp_path / "none.jsonl", missing_ok=False)


def test_append_writes_one_line_per_row(tmp_path):
  path = tmp_path / "rows.jsonl"
  jsonl.append(path, {"mask": "sam", "metric": 77.87})
  jsonl.append(str(path), {"mask": "adam", "nested": {"a": [1, 2]}})
  assert path.read_text() == ('{"mask": "sam", "metric": 77.87}\n'
                              '{"mask": "adam", "nested": {"a": [1, 2]}}\n')


def test_a_torn_last_line_is_left_out_and_cut_before_the_next_row(tmp_path):
  path = tmp_path / "rounds.jsonl"
  path.write_text('{"round": 0, "metric": 80.5}\n{"round": 1, "met')   # a killed write
  assert jsonl.read(path) == [{"round": 0, "metric": 80.5}]
  jsonl.append(path, {"round": 1, "metric": 79.0})
  assert path.read_text() == '{"round": 0, "metric": 80.5}\n{"round": 1, "metric": 79.0}\n'
  path.write_text('{"round": 0}')          # even a parsable row counts only with its newline
  assert jsonl.read(path) == []
  jsonl.append(path, {"round": 0})
  assert path.read_text() == '{"round": 0}\n'


def test_rewrite_replaces_the_file_with_rows_as_append_writes_them(tmp_path):
  path = tmp_path / "metrics.jsonl"
  path.write_text('{"step": 1}\n{"step": 2, "lo')
  jsonl.rewrite(path, [{"step": 1, "loss": float("nan")}, {"step": 2}])
  assert path.read_text() == '{"step": 1, "loss": null}\n{"step": 2}\n'
  assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.jsonl"]
