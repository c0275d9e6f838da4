"""Errors that mean "the user's input is wrong", as opposed to a bug.

The CLI turns a :class:`FlatjaxInputError` into one line on stderr and exit
status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import operator
from typing import Any


class FlatjaxInputError(ValueError):
  """Bad input from the user: a missing file, a malformed row, an unknown name."""


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
