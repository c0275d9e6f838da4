"""flatjax.files: a folder is replaced whole, whenever the process dies."""

from pathlib import Path

import pytest

from flatjax import files


def _write(text):
  def write(path: Path):
    path.mkdir()
    (path / "model.safetensors").write_text(text)
    (path / "config.json").write_text(text)
  return write


def _read(folder):
  return {p.name: p.read_text() for p in sorted(folder.iterdir())}


def test_replace_writes_aside_then_swaps(tmp_path):
  best = tmp_path / "best"
  files.replace_folder(best, _write("v1"))
  files.replace_folder(best, _write("v2"))
  assert _read(best) == {"config.json": "v2", "model.safetensors": "v2"}
  assert sorted(p.name for p in tmp_path.iterdir()) == ["best"]


def test_killed_while_writing_keeps_the_old_folder(tmp_path):
  best = tmp_path / "best"
  files.replace_folder(best, _write("v1"))

  def killed(path):
    path.mkdir()
    (path / "model.safetensors").write_text("half")
    raise KeyboardInterrupt
  with pytest.raises(KeyboardInterrupt):
    files.replace_folder(best, killed)
  assert _read(best) == {"config.json": "v1", "model.safetensors": "v1"}
  files.replace_folder(best, _write("v3"))   # the partial one is cleared
  assert _read(best) == {"config.json": "v3", "model.safetensors": "v3"}
  assert sorted(p.name for p in tmp_path.iterdir()) == ["best"]


def test_killed_between_the_renames_is_recovered_to_the_new_folder(tmp_path, monkeypatch):
  best = tmp_path / "best"
  files.replace_folder(best, _write("v1"))
  real = Path.rename

  def die_on_the_second(self, target):
    if self.name == "best.tmp":
      raise KeyboardInterrupt
    return real(self, target)
  monkeypatch.setattr(Path, "rename", die_on_the_second)
  with pytest.raises(KeyboardInterrupt):
    files.replace_folder(best, _write("v2"))
  monkeypatch.setattr(Path, "rename", real)
  assert not best.exists()   # best.old and best.tmp beside it
  files.recover_folder(best)
  assert _read(best) == {"config.json": "v2", "model.safetensors": "v2"}
  assert sorted(p.name for p in tmp_path.iterdir()) == ["best"]


def test_write_json_is_indented_and_leaves_nothing_aside(tmp_path):
  path = files.write_json(tmp_path / "results.json", {"step": 3, "best": {"a": 1.5}})
  assert path.read_text() == '{\n  "step": 3,\n  "best": {\n    "a": 1.5\n  }\n}\n'
  assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]
