"""Errors that are the run's or the user's, as opposed to a bug.

The CLI turns a :class:`FlatjaxInputError` into one line on stderr and exit
status 2, a :class:`TrainingDiverged` into one line and exit status 3;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import operator
from typing import Any


class FlatjaxInputError(ValueError):
  """Bad input from the user: a missing file, a malformed row, an unknown name."""


class TrainingDiverged(RuntimeError):
  """A training run whose loss or gradient norm stopped being finite. Nothing was
  saved from the diverged state; the last good checkpoint and ``best/`` stay."""

  def __init__(self, step: int, name: str, value: float, last_good: int | None):
    self.step, self.name, self.value, self.last_good = step, name, value, last_good
    kept = (f"its last good checkpoint is step {last_good}" if last_good is not None
            else "no checkpoint was saved before it")
    super().__init__(f"training diverged: {name} is {value} at step {step}; nothing was "
                     f"saved from then on, {kept} (try a smaller learning rate)")


def whole_number(name: str, value: Any, least: int) -> int:
  """``value`` as an int >= ``least``, else a FlatjaxInputError naming ``name``.
  Ints and numpy ints pass; bools and floats (even 2.0) are refused."""
  try:
    out = operator.index(value)
  except TypeError:
    out = None
  if out is None or isinstance(value, bool) or out < least:
    raise FlatjaxInputError(f"{name} must be a whole number >= {least}, got {value!r}")
  return out


def require_positive(section: str | None, config, *names: str) -> None:
  """Each named field of ``config`` is None or a positive number (NaN is not);
  the error names it by its key in the configuration: ``section.name``, or
  ``name`` for a configuration without sections (section None)."""
  for name in names:
    value = getattr(config, name)
    if value is not None and not value > 0:
      key = name if section is None else f"{section}.{name}"
      raise FlatjaxInputError(f"{key} must be positive, got {value}")
