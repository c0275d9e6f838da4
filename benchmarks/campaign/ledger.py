"""Resumable results and a time budget: the campaign's edges (files, clock, log).

Each finished unit is one JSON line of ``results.jsonl``, keyed by ``unit``. A rerun
reads the file and skips those units, so a run cut short by its time limit continues
where it stopped. Every row carries the code's revision and the device it ran on.
"""

from __future__ import annotations

import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

from flatjax import jsonl


class Clock:
  """Seconds since the campaign started, against its budget."""

  def __init__(self, budget_s: float):
    self.start = time.monotonic()
    self.budget_s = budget_s

  def elapsed(self) -> float:
    return time.monotonic() - self.start

  def left(self) -> float:
    return self.budget_s - self.elapsed()


class Ledger:
  """``results.jsonl`` and ``log.txt`` in ``out``; ``stamp`` is added to every row."""

  def __init__(self, out: Path, clock: Clock, stamp: dict[str, Any]):
    self.out = Path(out)
    self.out.mkdir(parents=True, exist_ok=True)
    self.path = self.out / "results.jsonl"
    self.clock = clock
    self.stamp = stamp
    self.rows = {row["unit"]: row for row in jsonl.read(self.path)}
    self._log = open(self.out / "log.txt", "a", buffering=1)

  def say(self, message: str) -> None:
    line = f"[{self.clock.elapsed():7.1f}s] {message}"
    print(line, flush=True)
    self._log.write(line + "\n")

  def get(self, unit: str) -> dict | None:
    return self.rows.get(unit)

  def run(self, unit: str, fn: Callable[[], dict], cost_s: float = 0.0) -> dict | None:
    """The row of ``unit``: recorded earlier, or ``fn()`` now (recorded as it returns).

    None when there is no time left for ``cost_s`` (the unit is left for a rerun) or
    ``fn`` raised (the traceback goes to the log and the campaign goes on).
    """
    if unit in self.rows:
      return self.rows[unit]
    if self.clock.left() < cost_s:
      self.say(f"{unit}: skipped, {self.clock.left():.0f} s left and it needs ~{cost_s:.0f} s")
      return None
    self.say(f"{unit}: start")
    t0 = time.monotonic()
    try:
      row = fn()
    except Exception:  # one unit's failure must not cost the others their device time
      self.say(f"{unit}: FAILED\n{traceback.format_exc()}")
      return None
    row = {"unit": unit, **row, "unit_s": round(time.monotonic() - t0, 2), **self.stamp}
    jsonl.append(self.path, row)
    self.rows[unit] = row
    self.say(f"{unit}: done in {row['unit_s']:.1f} s")
    return row


def stamp(revision: dict[str, Any], device: str, scale: str) -> dict[str, Any]:
  """What every row says about the code and machine that made it."""
  return {"revision": revision.get("revision", "unknown"), "dirty": revision.get("dirty"),
          "device": device, "scale": scale, "python": sys.version.split()[0]}
