"""Rows of a ``two_four`` run folder (:mod:`experiments.collect` describes a row).

``flatjax oneshot --granularity 2:4`` wrote the curves of the compare item's Adam and SAM
models of the same task and seed into ``oneshot/``: per model its dense row (with the dev
labels), the 25% point (3 of every 4 kept) and the 2:4 point at 50% (base: its dense
score), with compression ``2:4`` (the curve rows of :mod:`experiments.collect_swa`).
"""

from __future__ import annotations

from pathlib import Path

from experiments.collect_int8 import revisions
from experiments.collect_swa import COMPARED, compare_ids, compare_run, curve_rows, read_curves


def rows(config: dict, folder: Path) -> list[dict]:
  curves = read_curves(folder / "oneshot" / "oneshot.jsonl")
  compare = compare_run(config, folder)
  out = []
  for optimizer in COMPARED:
    ids = {**compare_ids(compare, optimizer), "scale": config["scale"],
           "revision": revisions(compare, folder / "oneshot")}
    out += [{**row, "compression": "2:4" if row["compression"] == "oneshot" else "none"}
            for row in curve_rows(ids, curves[optimizer])]
  return out
