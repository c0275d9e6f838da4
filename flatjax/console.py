"""What a run tells its user while it works: messages and progress bars.

Messages go to stderr so that stdout stays machine-readable; on several hosts
only the first process speaks.
"""

from __future__ import annotations

import sys

import jax


def say(msg: str) -> None:
  """A progress message for the user (stderr); on several hosts, from the first process only."""
  if jax.process_index() == 0:
    print(msg, file=sys.stderr, flush=True)


def progress_bar(enabled: bool, total: int, initial: int):
  """A tqdm bar over training steps (None when disabled)."""
  if not enabled:
    return None
  from tqdm.auto import tqdm
  return tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, mininterval=1.0)


def shown(row: dict) -> str:
  """A row's ``split/metric`` values for a progress message."""
  return ", ".join(f"{k} {v:.2f}" for k, v in row.items() if "/" in k)
