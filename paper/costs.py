"""What each SAM variant costs and buys: its train-step cost beside its compressibility.

The cost is ``benchmarks/sam_overhead.py``'s step time as a ratio to Adam's (the last run in
``benchmarks/results/sam_overhead_cpu.jsonl``; late-phase SAM's over a whole run, its Adam
steps and its SAM steps together). The compressibility is the ``variants`` item's: each
model's drop under one-shot pruning and under int8 (means over seeds, positive = lost), and
the claim's paired interval of Adam's drop minus the variant's (:mod:`paper.claims`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from paper import claims

ITEM = "variants"
COMPRESSIONS = ("oneshot", "int8")


def last_benchmark(path: Path) -> dict | None:
  """The last row of a ``sam_overhead`` JSON Lines file (None where there is none)."""
  path = Path(path)
  if not path.is_file():
    return None
  lines = [line for line in path.read_text().splitlines() if line.strip()]
  return json.loads(lines[-1]) if lines else None


def step_cost(benchmark: dict, model: str) -> float | None:
  """A model's step cost as a ratio to Adam's (its optimizer's: a radius or setting does
  not change what a step computes); late-phase SAM's over a run."""
  optimizer = re.sub(r"[@/].*", "", model)
  if optimizer == "latesam":
    return benchmark.get("latesam_run_ratio_to_adam")
  return benchmark["ratio_to_adam"].get(optimizer)


def table(rows: list[dict], benchmark: dict, pairs: list) -> list[str]:
  """The markdown table: the reference (Adam), then each candidate of ``pairs`` (the
  item's claims, Adam against SAM first) with its cost, its drops and its claims' intervals."""
  pairs = [["adam", "sam"]] + [list(p) for p in pairs if list(p) != ["adam", "sam"]]
  found = [c for c in claims.claims(ITEM, rows, pairs) if c.compression in COMPRESSIONS]
  if not found:
    return []
  by = {(c.candidate, c.compression): c for c in found}
  names = {claims.collect.label(r): claims.name(r) for r in rows}
  reference = found[0].reference
  lines = ["| model | step cost (× Adam) | fine-tuned | one-shot drop | int8 drop "
           "| one-shot: Adam's drop − its, 95% interval | int8: the same |",
           "|---|---|---|---|---|---|---|"]
  drops = [next((f"{c.reference_value:+.2f}" for c in found if c.compression == k), "–")
           for k in COMPRESSIONS]
  lines.append(f"| {reference} | 1.00 | {_score(rows, reference, found[0].seeds)} "
               f"| {drops[0]} | {drops[1]} | | |")
  for cand in dict.fromkeys(c.candidate for c in found):
    cost = step_cost(benchmark, names.get(cand, cand))
    got = [by.get((cand, k)) for k in COMPRESSIONS]
    drops = ["–" if c is None else f"{c.candidate_value:+.2f}" for c in got]
    seeds = next(c.seeds for c in got if c is not None)
    lines.append(f"| {cand} | {'–' if cost is None else f'{cost:.2f}'} "
                 f"| {_score(rows, cand, seeds)} | {drops[0]} | {drops[1]} "
                 f"| {_interval(got[0])} | {_interval(got[1])} |")
  return lines


def _score(rows: list[dict], label: str, seeds: list[int]) -> str:
  """The fine-tuned model's dev score, mean over ``seeds``."""
  found = [r["score"] for r in rows if r["compression"] == "none"
           and claims.collect.label(r) == label and r["seed"] in seeds]
  return f"{sum(found) / len(found):.2f}" if found else "–"


def _interval(c) -> str:
  if c is None:
    return "–"
  if c.interval is None:
    return f"– ({c.verdict})"
  iv = c.interval
  note = f"; {c.note}" if c.note else ""
  return f"{iv.mean:+.2f} [{iv.low:+.2f}, {iv.high:+.2f}] **{c.verdict}**{note}"
