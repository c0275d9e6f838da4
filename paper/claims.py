"""Claims from the runner's rows, each with a paired bootstrap interval (:mod:`paper.stats`).

Rows are ``experiments/results/ITEM/results.jsonl`` (``experiments.collect``). An item's
config lists its claims as (reference, candidate) optimizer pairs, ``[adam, sam]`` unless
it says otherwise:

* ``drop`` (the default): for every compression both were measured under, the candidate
  loses less of its dev score than the reference (the paper's claims);
* ``score``: the candidate's compressed model scores higher than the reference's (a SAM
  ticket against an Adam ticket, movement pruning's end point).

A model is named by its optimizer, ``@rho`` and ``/setting`` (:func:`name`); an entry
without a radius means every radius the rows have.

A claim is judged on the seeds whose rows hold every model's dev predictions; rows made
before flatjax kept predictions give means but no interval.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path
from typing import NamedTuple

import numpy as np

from experiments import collect
from paper import numbers, stats

COMPRESSIONS = {"imp": "IMP", "std": "Std", "oneshot": "one-shot", "int8": "int8",
                "cofi": "CoFi", "movement": "movement pruning", "2:4": "one-shot 2:4"}


def _table5(kind: str, task: str) -> str:
  full, compressed = numbers.TABLE5["full"], numbers.TABLE5[kind]
  if task not in full["adam"]:
    return "–"
  return (f"Adam {full['adam'][task]} → {compressed['adam'][task]}, "
          f"SAM {full['sam'][task]} → {compressed['sam'][task]}")


def _table8(task: str) -> str:
  if task not in numbers.TABLE8:
    return "–"
  metric, adam, sam = numbers.TABLE8[task]
  return f"{metric}: Adam {adam[0]} → {adam[1]}, SAM {sam[0]} → {sam[1]}"


def _table2(task: str) -> str:
  if task not in numbers.TABLE2:
    return "–"
  adam, sam = numbers.TABLE2[task]
  return f"95%: Adam {adam[0]} → {adam[1]}, SAM {sam[0]} → {sam[1]}"


#: The paper's Adam and SAM numbers per compression (Tables 2, 5, 8; one-shot is a figure).
PAPER = {"imp": lambda t: _table5("imp", t), "std": lambda t: _table5("std", t),
         "int8": _table8, "cofi": _table2,
         "oneshot": lambda t: "SAM's curve above Adam's (figure)"}


class Claim(NamedTuple):
  item: str
  task: str
  metric: str
  compression: str
  kind: str               # "drop" or "score"
  reference: str          # e.g. "adam"
  candidate: str          # e.g. "sam ρ 0.05"
  seeds: list[int]
  reference_value: float  # drop (points, positive = lost) or score, mean over seeds
  candidate_value: float
  interval: stats.Interval | None
  verdict: str
  note: str
  #: a model of the claim scores within 2 SE of the majority label (see ``_unlearned``)
  at_chance: bool = False


def read_rows(results: Path, item: str) -> list[dict]:
  """The item's rows (none where it has no results folder)."""
  return collect.read_rows(Path(results) / item / collect.ROWS_FILE)


def claims(item: str, rows: list[dict], pairs=(("adam", "sam"),)) -> list[Claim]:
  """Every claim ``pairs`` (``[reference, candidate]`` or ``{reference, candidate, kind}``)
  asks of the item's rows, where both optimizers were measured on the same seeds."""
  models: dict = defaultdict(dict)      # (task, compression) -> (optimizer, seed) -> row
  dense: dict = {}                      # (task, optimizer, seed) -> row
  for r in rows:
    if r["compression"] == "none":
      dense[(r["task"], name(r), r["seed"])] = r
    else:
      models[(r["task"], r["compression"])][(name(r), r["seed"])] = r
  order = lambda key: (numbers.task_rank(key[0]),
                       list(COMPRESSIONS).index(key[1]) if key[1] in COMPRESSIONS else 99)
  names = sorted({name(r) for r in rows})
  out = []
  for pair in pairs:
    ref_entry, cand_entry, kind = (
        (pair["reference"], pair["candidate"], pair.get("kind", "drop"))
        if isinstance(pair, dict) else (*pair, "drop"))
    for ref, cand in [(r, c) for r in _resolve(ref_entry, names)
                      for c in _resolve(cand_entry, names)]:
      for (task, compression), found in sorted(models.items(), key=lambda kv: order(kv[0])):
        seeds = sorted({s for (o, s) in found if o == ref} & {s for (o, s) in found if o == cand})
        if kind == "drop":
          seeds = [s for s in seeds if found[(ref, s)].get("base") is not None]
        if seeds:
          out.append(_claim(item, task, compression, kind, ref, cand, seeds, found, dense))
  return out


def _resolve(entry: str, names: list[str]) -> list[str]:
  """The model names a claim's entry means: itself, or every radius of it (``"sam"``:
  ``"sam@0.05"`` and ``"sam@0.02"``)."""
  return [n for n in names if n == entry or re.sub(r"@[^/]*", "", n) == entry]


def name(row: dict) -> str:
  """A model's name in claims: its optimizer, ``@rho`` where it has a radius, ``/setting``
  where it has one (``"adam/sam-mask"``: fine-tuned with Adam under SAM's mask)."""
  return (row["optimizer"] + (f"@{row['rho']:g}" if row.get("rho") is not None else "")
          + (f"/{row['setting']}" if row.get("setting") else ""))


def _claim(item, task, compression, kind, ref, cand, seeds, found, dense) -> Claim:
  first = found[(cand, seeds[0])]
  metric = first["metric"].split("/")[-1]
  if kind == "drop":
    value = lambda o: float(np.mean([found[(o, s)]["base"] - found[(o, s)]["score"]
                                     for s in seeds]))
  else:
    value = lambda o: float(np.mean([found[(o, s)]["score"] for s in seeds]))
  head = (item, task, metric, compression, kind, collect.label(found[(ref, seeds[0])]),
          collect.label(first), seeds, value(ref), value(cand))
  # Rows hold predicted classes (a digit string) or, where the metric is a mean over
  # examples (SQuAD), each example's score (a list).
  if any(isinstance(r.get("predictions"), list) for r in (*found.values(), *dense.values())
         if r["task"] == task):
    metric = "mean"
  if metric not in stats.METRICS:
    return Claim(*head, None, "no interval",
                 f"no per-example bootstrap for {task}'s {metric} yet")
  def paired(s: int) -> bool:
    needed = [found[(o, s)] for o in (ref, cand)]
    if kind == "drop":
      needed += [dense.get((task, o, s)) or {} for o in (ref, cand)]
    return all(r.get("predictions") is not None for r in needed)
  judged = [s for s in seeds if paired(s)]
  if not judged:
    return Claim(*head, None, "no interval", "rows without dev predictions")
  claim = _judged(head, task, kind, ref, cand, judged, found, dense, metric)
  if judged != seeds:
    # The means above are over every seed; the interval only over those with predictions.
    note = (f"interval over seed{'s' if len(judged) > 1 else ''} "
            f"{', '.join(map(str, judged))} only (the others kept no dev predictions)")
    claim = claim._replace(note="; ".join(n for n in (note, claim.note) if n))
  return claim


def _judged(head, task, kind, ref, cand, seeds, found, dense, metric) -> Claim:
  """The claim's interval and verdict over ``seeds``, whose rows all hold predictions."""
  classes = lambda rows: [stats.as_values(r["predictions"]) for r in rows]
  after = lambda o: classes([found[(o, s)] for s in seeds])
  labels = ([np.zeros(len(p)) for p in after(ref)] if metric == "mean" else
            [stats.as_classes(_labels(found, dense, task, ref, cand, s)) for s in seeds])
  if kind == "drop":
    before = lambda o: classes([dense[(task, o, s)] for s in seeds])
    interval = stats.gap_interval(labels, before(ref), after(ref), before(cand), after(cand),
                                  metric=metric)
    # A compressed model at the majority label lost all it could: its drop is the
    # fine-tuned model's distance to chance, not how it stood the compression.
    models = {(ref, "fine-tuned"): before(ref), (cand, "fine-tuned"): before(cand),
              (ref, "compressed"): after(ref), (cand, "compressed"): after(cand)}
  else:
    interval = stats.score_interval(labels, after(ref), after(cand), metric=metric)
    models = {(ref, ""): after(ref), (cand, ""): after(cand)}
  near, majority = _unlearned(models, labels, metric)
  named = [" ".join([o, " and ".join(state for n, state in near if n == o)]).strip()
           for o in dict.fromkeys(n for n, _ in near)]
  note = (f"{', '.join(named)} within 2 SE of the majority label ({100 * majority:.1f}%)"
          if near else "")
  return Claim(*head, interval, stats.verdict(interval), note, bool(near))


def _unlearned(models: dict, labels: list, metric: str) -> tuple[list, float]:
  """The keys of ``models`` whose dev accuracy, mean over seeds, is within two standard
  errors of always predicting the majority label, and that label's accuracy: their drop
  says little (a fine-tuned model that learned nothing has nothing to lose, a compressed
  one there lost all it could). The verdict stays the interval's."""
  if metric != "accuracy":
    return [], 0.0
  y = np.asarray(labels)
  majority = float(np.mean([np.bincount(row).max() / row.size for row in y]))
  margin = 2 * np.sqrt(majority * (1 - majority) / y.shape[1])
  near = [name for name, predicted in models.items()
          if np.mean(stats.accuracy(np.asarray(predicted), y)) / 100 <= majority + margin]
  return near, majority


def _labels(found, dense, task, ref, cand, seed) -> str:
  """The seed's dev labels, from whichever of its rows carries them."""
  for row in (dense.get((task, ref, seed)), dense.get((task, cand, seed)),
              found[(ref, seed)], found[(cand, seed)]):
    if row and row.get("labels"):
      return row["labels"]
  raise ValueError(f"{task} seed {seed}: predictions but no labels")


def markdown(all_claims: list[Claim]) -> list[str]:
  """The claims table: the paper's numbers, flatjax's, the interval, the verdict."""
  lines = ["| item | claim | task | paper (bert-base) | reference | candidate | "
           "difference, 95% interval | detectable | verdict |",
           "|---|---|---|---|---|---|---|---|---|"]
  for c in all_claims:
    iv = c.interval
    cell = (f"{iv.mean:+.2f} [{iv.low:+.2f}, {iv.high:+.2f}]" + (f"; {c.note}" if c.note else "")
            if iv else f"– ({c.note})")
    what = COMPRESSIONS.get(c.compression, c.compression)
    claim = (f"{what}: {c.candidate} loses less than {c.reference}" if c.kind == "drop"
             else f"{what}: {c.candidate} ends higher than {c.reference}")
    unit = "drop" if c.kind == "drop" else "score"
    seeds = f"seed{'s' if len(c.seeds) > 1 else ''} {', '.join(map(str, c.seeds))}"
    paper = (PAPER.get(c.compression, lambda t: "–")(c.task)
             if c.reference.startswith("adam") and c.candidate.startswith("sam") else "–")
    lines.append(
        f"| [{c.item}]({c.item}/README.md) | {claim} "
        f"| {numbers.TASK_NAMES.get(c.task, c.task)} {c.metric} ({seeds}) | {paper} "
        f"| {unit} {c.reference_value:+.2f} | {unit} {c.candidate_value:+.2f} | {cell} "
        f"| {f'{iv.detectable:.2f}' if iv else '–'} | **{c.verdict}** |")
  return lines
