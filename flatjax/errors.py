"""Errors that mean "the user's input is wrong", as opposed to a bug.

The CLI turns a :class:`FlatjaxInputError` into one line on stderr and exit
status 2; anything else is a bug and keeps its traceback.
"""


class FlatjaxInputError(ValueError):
  """Bad input from the user: a missing file, a malformed row, an unknown name."""
