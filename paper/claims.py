"""The compression claims from the runner's rows: per item, task and compression, Adam's
drop against SAM's with a paired bootstrap interval (:mod:`paper.stats`).

Rows are ``experiments/results/ITEM/results.jsonl`` (``experiments.collect``). A claim is
judged on the seeds whose rows hold every model's dev predictions; rows made before flatjax
kept predictions (``revision_from: commit``) give means but no interval.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import NamedTuple

import numpy as np

from paper import numbers, stats

COMPRESSIONS = {"imp": "IMP", "oneshot": "one-shot", "int8": "int8"}
# The paper's Adam -> SAM numbers per compression (Tables 5 and 8; the one-shot claim is a
# figure).
PAPER = {
    "imp": lambda task: _pair(numbers.TABLE5["full"], numbers.TABLE5["imp"], task),
    "int8": lambda task: (f"{numbers.TABLE8[task][0]}: "
                          f"Adam {numbers.TABLE8[task][1][0]} → {numbers.TABLE8[task][1][1]}, "
                          f"SAM {numbers.TABLE8[task][2][0]} → {numbers.TABLE8[task][2][1]}"
                          if task in numbers.TABLE8 else "–"),
    "oneshot": lambda task: "SAM's curve above Adam's (figure)",
}


def _pair(full: dict, compressed: dict, task: str) -> str:
  if task not in full["adam"]:
    return "–"
  return (f"Adam {full['adam'][task]} → {compressed['adam'][task]}, "
          f"SAM {full['sam'][task]} → {compressed['sam'][task]}")


class Claim(NamedTuple):
  item: str
  task: str
  metric: str
  compression: str
  sam: str               # SAM's label, e.g. "sam ρ 0.05"
  seeds: list[int]
  adam_drop: float       # mean over seeds, points
  sam_drop: float
  interval: stats.Interval | None
  verdict: str
  note: str


def read_rows(results: Path, item: str) -> list[dict]:
  path = Path(results) / item / "results.jsonl"
  if not path.is_file():
    return []
  return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def claims(item: str, rows: list[dict]) -> list[Claim]:
  """Every (task, compression) the item's rows measure for both Adam and SAM."""
  models: dict = defaultdict(dict)      # (task, compression) -> (optimizer, seed) -> row
  dense: dict = {}                      # (task, optimizer, seed) -> row
  for r in rows:
    if r["compression"] == "none":
      dense[(r["task"], r["optimizer"], r["seed"])] = r
    elif r.get("base") is not None:
      models[(r["task"], r["compression"])][(r["optimizer"], r["seed"])] = r
  out = []
  order = lambda key: (numbers.task_rank(key[0]), list(COMPRESSIONS).index(key[1]))
  for (task, compression), found in sorted(models.items(), key=lambda kv: order(kv[0])):
    seeds = sorted({s for (o, s) in found if o == "adam"} & {s for (o, s) in found if o == "sam"})
    if seeds:
      out.append(_claim(item, task, compression, seeds, found, dense))
  return out


def _claim(item, task, compression, seeds, found, dense) -> Claim:
  drop = lambda o: float(np.mean([found[(o, s)]["base"] - found[(o, s)]["score"] for s in seeds]))
  sam = found[("sam", seeds[0])]
  label = "sam" + (f" ρ {sam['rho']:g}" if sam.get("rho") is not None else "")
  metric = sam["metric"].split("/")[-1]
  paired = [(dense.get((task, o, s)), found[(o, s)]) for s in seeds for o in ("adam", "sam")]
  if metric not in stats.METRICS or task == "squad":
    return Claim(item, task, metric, compression, label, seeds, drop("adam"), drop("sam"), None,
                 "no interval", f"no per-example bootstrap for {task}'s {metric} yet")
  if any(d is None or d.get("predictions") is None or m.get("predictions") is None
         for d, m in paired):
    return Claim(item, task, metric, compression, label, seeds, drop("adam"), drop("sam"), None,
                 "no interval", "rows without dev predictions")
  c = lambda o, key: [stats.as_classes(dense[(task, o, s)][key] if key != "after"
                                        else found[(o, s)]["predictions"]) for s in seeds]
  labels = [stats.as_classes(dense[(task, "adam", s)]["labels"]) for s in seeds]
  interval = stats.gap_interval(labels, c("adam", "predictions"), c("adam", "after"),
                                c("sam", "predictions"), c("sam", "after"), metric=metric)
  return Claim(item, task, metric, compression, label, seeds, drop("adam"), drop("sam"), interval,
               stats.verdict(interval), "")


def markdown(all_claims: list[Claim]) -> list[str]:
  """The claims table: the paper's numbers, flatjax's drops, the interval, the verdict."""
  lines = ["| item | claim | task | paper (bert-base) | Adam drop | SAM drop | "
           "Adam drop − SAM drop, 95% interval | detectable | verdict |",
           "|---|---|---|---|---|---|---|---|---|"]
  for c in all_claims:
    iv = c.interval
    cell = (f"{iv.mean:+.2f} [{iv.low:+.2f}, {iv.high:+.2f}]" if iv else f"– ({c.note})")
    lines.append(
        f"| [{c.item}]({c.item}/README.md) | {COMPRESSIONS[c.compression]}: {c.sam} loses less "
        f"| {numbers.TASK_NAMES.get(c.task, c.task)} {c.metric} "
        f"(seed{'s' if len(c.seeds) > 1 else ''} {', '.join(map(str, c.seeds))}) "
        f"| {PAPER[c.compression](c.task)} | {c.adam_drop:+.2f} | {c.sam_drop:+.2f} | {cell} "
        f"| {f'{iv.detectable:.2f}' if iv else '–'} | **{c.verdict}** |")
  return lines
