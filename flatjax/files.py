"""Files and folders replaced whole, so that a reader, or a resumed run, never
meets half of one (settings and results files, ``best/`` and ``final/`` models).

A folder is written aside, as ``FOLDER.tmp``, then swapped in by two renames.
Killed while writing, the old folder stays and the partial one is cleared by the
next write; killed between the renames, :func:`recover_folder` puts the new
folder, written whole, in place.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Callable


def write_text(path: str | Path, text: str) -> Path:
  """``text`` written aside and renamed into ``path``: a reader never sees half of it."""
  path = Path(path)
  tmp = path.with_name(path.name + ".tmp")
  tmp.write_text(text)
  tmp.replace(path)
  return path


def write_json(path: str | Path, value: Any) -> Path:
  """``value`` as indented JSON, written aside and renamed into ``path``."""
  return write_text(path, json.dumps(value, indent=2) + "\n")


def _aside(folder: Path, kind: str) -> Path:
  return folder.with_name(f"{folder.name}.{kind}")


def replace_folder(folder: str | Path, write: Callable[[Path], object]) -> Path:
  """Writes ``folder`` anew through ``write(path)`` and swaps it in; returns it."""
  folder = Path(folder)
  tmp, old = _aside(folder, "tmp"), _aside(folder, "old")
  recover_folder(folder)
  shutil.rmtree(tmp, ignore_errors=True)
  write(tmp)
  if folder.exists():
    folder.rename(old)
  tmp.rename(folder)
  shutil.rmtree(old, ignore_errors=True)
  return folder


def recover_folder(folder: str | Path) -> None:
  """Finishes a :func:`replace_folder` killed between its two renames (the old
  folder moved aside, the new one whole beside it) and clears what it left."""
  folder = Path(folder)
  tmp, old = _aside(folder, "tmp"), _aside(folder, "old")
  if not folder.exists() and old.exists():
    (tmp if tmp.exists() else old).rename(folder)
  shutil.rmtree(old, ignore_errors=True)
