"""JSON Lines files: the append-only result logs of flatjax's runs.

``metrics.jsonl``, IMP's ``rounds.jsonl``, ``oneshot.jsonl``, ``tickets.jsonl`` and the
benchmarks' logs are one JSON object per line, appended as each row is done, so an
interrupted run keeps its finished rows and a resumed one skips them.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable, Iterator

from flatjax import files
from flatjax.errors import FlatjaxInputError


def read(path: str | Path, missing_ok: bool = True) -> list[dict[str, Any]]:
  """The rows of ``path`` in order, blank lines skipped; ``[]`` for a missing file
  unless ``missing_ok`` is False (then FileNotFoundError). A last line without its
  newline is a row whose write was cut short (a killed run): it is left out."""
  path = Path(path)
  if missing_ok and not path.exists():
    return []
  text = path.read_text()
  complete = text[:text.rfind("\n") + 1]
  return [json.loads(line) for line in complete.splitlines() if line.strip()]


def records(lines: Iterable[str], where: str | Path) -> Iterator[tuple[int, Any]]:
  """``(line number, value)`` of each non-blank line of a user's JSON Lines file;
  a line that is not JSON is a FlatjaxInputError naming ``where:line``."""
  for lineno, line in enumerate(lines, start=1):
    if not line.strip():
      continue
    try:
      value = json.loads(line)
    except json.JSONDecodeError as err:
      raise FlatjaxInputError(f"invalid JSON at {where}:{lineno}: {err.msg}") from None
    yield lineno, value


def finite(value: Any) -> Any:
  """``value`` with every NaN or infinite float replaced by None (JSON has neither)."""
  if isinstance(value, float):
    return value if math.isfinite(value) else None
  if isinstance(value, dict):
    return {k: finite(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [finite(v) for v in value]
  return value


def append(path: str | Path, row: dict[str, Any]) -> None:
  """Appends ``row`` as one line of strict JSON (the file is created if need be);
  NaN and infinities are written as null."""
  path = Path(path)
  _drop_torn_tail(path)
  with path.open("a") as f:
    f.write(json.dumps(finite(row), allow_nan=False) + "\n")


def _drop_torn_tail(path: Path) -> None:
  """Cuts a last line whose write was cut short, so that the next row starts a line."""
  if not path.exists() or path.stat().st_size == 0:
    return
  with path.open("rb+") as f:
    f.seek(-1, 2)
    if f.read(1) == b"\n":   # the usual case: only the last byte is read
      return
    f.seek(0)
    f.truncate(f.read().rfind(b"\n") + 1)


def rewrite(path: str | Path, rows: Iterable[dict[str, Any]]) -> None:
  """Replaces ``path`` with ``rows``, as :func:`append` writes them (aside, then renamed)."""
  files.write_text(path, "".join(json.dumps(finite(r), allow_nan=False) + "\n" for r in rows))
