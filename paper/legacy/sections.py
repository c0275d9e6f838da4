"""One section of the report per paper item, read from the experiments' result files.

Each ``*_section(results)`` reads the folders an experiment script wrote under
``experiments/results/`` and returns a :class:`Section`: the paper's claim, the scale
the numbers were measured at, the commands that made them, a table of paper vs flatjax
numbers, and the verdicts (:mod:`paper.legacy.verdicts`). A missing folder gives a
section that says so, so the report always covers every item.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any, Callable

from flatjax import jsonl
from paper import numbers as paper
from paper.legacy import verdicts as V
from flatjax.train.runs import recorded


@dataclasses.dataclass
class Finding:
  """One tested claim: where, the paper's number, flatjax's number, the verdict."""
  claim: str
  setting: str
  paper: str
  flatjax: str
  verdict: str


@dataclasses.dataclass
class Section:
  key: str
  short: str                      # the item's name in the scoreboard
  title: str
  claim: str
  commands: list[str]
  folders: list[str]
  scale: str = ""
  table: list[list[str]] = dataclasses.field(default_factory=list)  # header row first
  findings: list[Finding] = dataclasses.field(default_factory=list)
  plots: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # (caption, path)
  notes: list[str] = dataclasses.field(default_factory=list)

  @property
  def empty(self) -> bool:
    return len(self.table) <= 1 and not self.findings


# ---------------------------------------------------------------------------------------------
# Reading result files

def _json(path: Path) -> Any:
  return json.loads(path.read_text())


def _seed_dirs(folder: Path) -> list[tuple[int, Path]]:
  """``folder/seed<N>/`` sub-folders, by seed."""
  out = []
  for d in folder.glob("seed*"):
    m = re.fullmatch(r"seed(\d+)", d.name)
    if m and d.is_dir():
      out.append((int(m.group(1)), d))
  return sorted(out)


def _task_folders(results: Path, prefix: str) -> list[tuple[str, Path]]:
  """``results/<prefix><task>/`` folders in the paper's task order."""
  found = {d.name[len(prefix):]: d for d in results.glob(prefix + "*") if d.is_dir()}
  return sorted(found.items(), key=lambda kv: paper.task_rank(kv[0]))


def _seeds(n: int) -> str:
  return f"{n} seed" + ("s" if n != 1 else "")


_task = paper.task_label


def _metric_key(metric: str) -> str:
  """``"validation/accuracy"`` -> ``"accuracy"``."""
  return metric.rsplit("/", 1)[-1]


def _commands(results: Path, folders: list[str]) -> list[str]:
  """The "Made by" commands of the folders' READMEs, each once."""
  out: list[str] = []
  for f in folders:
    readme = results / f / "README.md"
    cmd = _made_by(readme) if readme.is_file() else None
    if cmd and cmd not in out:
      out.append(cmd)
  return out


class Chance:
  """No-reading dev scores from ``chance/chance.json`` (experiments/chance_levels.py): the
  majority label, SQuAD's first-k-words answer."""

  def __init__(self, results: Path):
    path = results / "chance" / "chance.json"
    self.tasks = _json(path)["tasks"] if path.is_file() else {}

  def level(self, task: str, metric: str,
            seeds: list[int] | None = None) -> V.ChanceLevel | None:
    """The baseline's ``metric`` over ``seeds`` (their dev samples), with its recorded
    margin or else the sampling margin of an accuracy on that many examples (the larger
    over seeds; the least margin for other metrics)."""
    per_seed = self.tasks.get(paper.base_task(task))
    if not per_seed:
      return None
    key = _metric_key(metric)
    rows = [row for seed, row in per_seed.items()
            if key in row and (seeds is None or int(seed) in seeds)]
    if not rows:
      return None
    margins = [m for m in (_margin(row, key) for row in rows) if m is not None]
    return V.ChanceLevel(V.mean([row[key] for row in rows]),
                         max(margins, default=V.CHANCE_MARGIN))


  def per_seed(self, task: str, metric: str,
               seeds: list[int]) -> list[V.ChanceLevel | None]:
    """Each seed's own level (its dev sample's), for deciding whether that seed counts; a
    seed without a recorded level gets the level over all seeds of ``task``."""
    pooled = self.level(task, metric)
    return [self.level(task, metric, [seed]) or pooled for seed in seeds]


def _margin(row: dict, key: str) -> float | None:
  """One seed's margin around its chance level: the one recorded with it (SQuAD's F1), else
  an accuracy's binomial sampling margin; None where neither applies."""
  if "margin" in row:
    return row["margin"]
  if key == "accuracy" and row.get("examples"):
    return V.sampling_margin(row["accuracy"], row["examples"])
  return None


def _uncounted_note(task: str, seeds: list[int], testable: list[bool],
                    chance: V.ChanceLevel | None, skip: tuple[str, ...] = ()) -> str | None:
  """The note naming a task's seeds left out of a verdict for being at chance (but not
  those in ``skip``, explained elsewhere)."""
  left = [str(seed) for seed, t in zip(seeds, testable) if not t and str(seed) not in skip]
  if not left:
    return None
  return (f"{_task(task)}: seed{'s' if len(left) > 1 else ''} {', '.join(left)} not counted: "
          f"a model within the chance margin ({V.fmt_chance(chance)}) before compression, or "
          "both after.")


def _counted(seeds: list[int], testable: list[bool]) -> str:
  """``""`` when every seed counts toward the verdict, else which do."""
  if all(testable) or not any(testable):   # all count, or the verdict says none does
    return ""
  kept = [str(seed) for seed, t in zip(seeds, testable) if t]
  return f"; counted: seed{'s' if len(kept) > 1 else ''} {', '.join(kept)}"


def _scale_of(train: dict) -> str:
  """A run's scale in words, from its saved TrainConfig."""
  train = recorded(train)
  n = train.get("max_train_examples")
  parts = [str(train.get("model", "?")),
           f"{n:,} training examples" if n else "all training data",
           f"{train.get('epochs', 0):g} epochs", f"lr {train.get('lr', 0):g}",
           f"batch {train.get('batch_size')}", f"max length {train.get('max_length')}"]
  if train.get("max_eval_examples"):
    parts.append(f"{train['max_eval_examples']} dev examples")
  return ", ".join(parts)


# ---------------------------------------------------------------------------------------------
# compare runs: IMP (Tables 1/5), one-shot curves, int8 (Table 8)

@dataclasses.dataclass
class CompareRun:
  task: str
  seed: int
  folder: Path
  results: dict
  settings: dict

  def opt(self, name: str) -> dict | None:
    return self.results["optimizers"].get(name)


def read_compare(results: Path) -> dict[str, list[CompareRun]]:
  """Every ``compare_<task>/seed<N>/`` folder with a results.json, by task."""
  runs: dict[str, list[CompareRun]] = {}
  for task, folder in _task_folders(results, "compare_"):
    for seed, d in _seed_dirs(folder):
      if (d / "results.json").is_file():
        settings = _json(d / "compare.json") if (d / "compare.json").is_file() else {}
        runs.setdefault(task, []).append(CompareRun(task, seed, d, _json(d / "results.json"),
                                                    settings))
  return runs


def _compare_scale(runs: dict[str, list[CompareRun]]) -> str:
  lines = []
  for task, rs in runs.items():
    train = rs[0].settings.get("train", {})
    seeds = ", ".join(str(r.seed) for r in rs)
    scope = rs[0].settings.get("scope", "bert")
    rounds = rs[0].settings.get("rounds", "?")
    lines.append(f"{_task(task)}: {_scale_of(train)}; IMP in {rounds} rounds over the "
                 f"`{scope}` scope; seeds {seeds}")
  return "; ".join(lines)


def _drop_claim(section: Section, claim: str, runs: dict[str, list[CompareRun]], chance: Chance,
                before: str, after: str, paper_rows: Callable[[str], tuple | None],
                sparsity_key: str | None, paper_figure: str | None = None) -> None:
  """Adds a table row and a finding per task for "SAM loses less from ``before`` to
  ``after``" (keys of compare's results.json); ``paper_figure`` stands for the paper's
  number where the paper shows the claim only in a figure."""
  for task, rs in runs.items():
    pairs = [(r.opt("adam"), r.opt("sam")) for r in rs]
    pairs = [(a, s) for a, s in pairs if a and s]
    if not pairs:
      continue
    metric = pairs[0][0]["metric"]
    a_before = [a[before] for a, _ in pairs]
    a_after = [a[after] for a, _ in pairs]
    s_before = [s[before] for _, s in pairs]
    s_after = [s[after] for _, s in pairs]
    diffs = [(ab - aa) - (sb - sa) for ab, aa, sb, sa in zip(a_before, a_after, s_before, s_after)]
    seeds = [r.seed for r in rs if r.opt("adam") and r.opt("sam")]
    level = chance.level(task, metric, seeds)
    levels = chance.per_seed(task, metric, seeds)
    testable = [V.seed_testable([ab, sb], [aa, sa], lv)
                for ab, aa, sb, sa, lv in zip(a_before, a_after, s_before, s_after, levels)]
    verdict = V.verdict_by_seed(diffs, testable)
    sparsity = f"{pairs[0][0][sparsity_key]:.0%}" if sparsity_key else ""
    collapsed = [str(seed) for seed, ab, aa, sb, sa, lv in
                 zip(seeds, a_before, a_after, s_before, s_after, levels)
                 if V.collapsed([ab, sb], [aa, sa], lv)]
    if collapsed:
      section.notes.append(f"{_task(task)}: both compressed models fall to the majority label "
                           f"({V.fmt_chance(level)}) at {sparsity} (seed"
                           f"{'s' if len(collapsed) > 1 else ''} {', '.join(collapsed)}), "
                           "so neither loses less there.")
    note = _uncounted_note(task, seeds, testable, level, tuple(collapsed))
    if note:
      section.notes.append(note)
    ref = paper_rows(task)
    if ref:
      (pa_b, pa_a), (ps_b, ps_a) = ref
      paper_text = (f"Adam {V.fmt(pa_b, 1)} → {V.fmt(pa_a, 1)}, SAM {V.fmt(ps_b, 1)} → "
                    f"{V.fmt(ps_a, 1)}")
      paper_diff = (pa_b - pa_a) - (ps_b - ps_a)
      paper_says = "yes" if paper_diff > 0 else "no"
    elif paper_figure:
      paper_text, paper_says = paper_figure, "yes"
    else:
      paper_text, paper_says = "–", "–"
    row = [_task(task)] + ([sparsity] if sparsity_key else []) + [
        paper_text, V.fmt_transition(a_before, a_after), V.fmt_transition(s_before, s_after),
        V.fmt_seeds(diffs), str(len(pairs)), paper_says,
        verdict + ("" if level is None else f" (chance {V.fmt_chance(level)})")]
    section.table.append(row)
    section.findings.append(Finding(
        claim, f"{_task(task)} {sparsity}".strip(), paper_text,
        f"Adam {V.fmt_transition(a_before, a_after)}, SAM {V.fmt_transition(s_before, s_after)}"
        f"; Adam drop − SAM drop {V.fmt_seeds(diffs)} ({_seeds(len(pairs))}"
        f"{_counted(seeds, testable)})", verdict))


def _table5_rows(kind: str) -> Callable[[str], tuple | None]:
  def rows(task):
    task = paper.base_task(task)
    t = paper.TABLE5
    if task not in t["full"]["adam"]:
      return None
    return ((t["full"]["adam"][task], t[kind]["adam"][task]),
            (t["full"]["sam"][task], t[kind]["sam"][task]))
  return rows


# The tasks experiments/compare_tasks.sh runs at CPU scale.
CPU_TASKS = ("rte", "mrpc", "sst2", "qnli", "mnli", "qqp", "squad")

_DROP_HEADER = ["paper (bert-base)", "flatjax Adam", "flatjax SAM",
                "Adam drop − SAM drop (seeds)", "seeds", "paper: SAM loses less?", "verdict"]


def imp_section(results: Path) -> Section:
  runs = read_compare(results)
  section = Section(
      "imp", "Tables 1/5 IMP", "Tables 1/5: IMP, Adam vs SAM, at the reference sparsities",
      "Lottery tickets found by iterative magnitude pruning with rewinding keep more of the "
      "full model's accuracy when fine-tuned with SAM than with Adam (Table 5's IMP rows).",
      _commands(results, [f"compare_{t}" for t in runs]), [f"compare_{t}" for t in runs])
  section.scale = _compare_scale(runs)
  section.table = [["task", "sparsity"] + _DROP_HEADER]
  _drop_claim(section, "IMP: SAM loses less", runs, Chance(results), "full", "imp",
              _table5_rows("imp"), "imp_sparsity")
  missing = [_task(t) for t in CPU_TASKS if t not in runs]
  if missing:
    section.notes.append("Not run at CPU scale yet (experiments/compare_tasks.sh covers them): "
                         + ", ".join(missing) + ".")
  for task, rs in runs.items():
    png = rs[0].folder / "compare.png"
    if png.is_file():
      section.plots.append((f"{_task(task)}, seed {rs[0].seed}", str(png.relative_to(results))))
  return section


# The paper's one-shot figure prunes in 5% steps up to 60%: its claim is about that range.
ONESHOT_FIGURE_MAX = 0.6


def _oneshot_at(run: CompareRun, limit: float) -> CompareRun:
  """``run`` with each optimizer's one-shot score at the sparsest point of its curve
  (``<opt>/oneshot.jsonl``) that is no sparser than ``limit``, as ``oneshot_figure`` and
  ``oneshot_figure_sparsity``; without a curve, the score at the reference sparsity."""
  optimizers = {}
  for name, o in run.results["optimizers"].items():
    o = dict(o, oneshot_figure=o["oneshot"], oneshot_figure_sparsity=o["oneshot_sparsity"])
    rows = [r for r in jsonl.read(run.folder / name / "oneshot.jsonl")
            if r["target_sparsity"] <= limit + 1e-6 and r["metric_name"] == o["metric"]]
    if rows:
      point = max(rows, key=lambda r: r["target_sparsity"])
      o.update(oneshot_figure=point["metric"], oneshot_figure_sparsity=point["sparsity"])
    optimizers[name] = o
  return dataclasses.replace(run, results=dict(run.results, optimizers=optimizers))


def oneshot_section(results: Path) -> Section:
  runs = read_compare(results)
  section = Section(
      "oneshot", "One-shot", "One-shot magnitude pruning without retraining",
      "Pruned in one shot and not retrained, SAM's fine-tuned model holds its accuracy longer "
      "than Adam's (the paper's one-shot figure, 5% steps to 60%; no table). Compared at 60%, "
      "the end of the paper's range, or at the task's reference sparsity where the run's "
      "curve ends before 60% (MRPC 50%, SQuAD 40%).",
      _commands(results, [f"compare_{t}" for t in runs]), [f"compare_{t}" for t in runs])
  section.scale = _compare_scale(runs) + "; global magnitude ranking, 10% steps"
  section.table = [["task", "sparsity"] + _DROP_HEADER]
  at_figure = {task: [_oneshot_at(r, ONESHOT_FIGURE_MAX) for r in rs]
               for task, rs in runs.items()}
  _drop_claim(section, "one-shot: SAM loses less", at_figure, Chance(results), "oneshot_dense",
              "oneshot_figure", lambda task: None, "oneshot_figure_sparsity",
              paper_figure="figure: SAM above Adam up to 60%")
  section.notes.append("The curves are the right-hand panels of the compare plots in the "
                       "Table 1/5 section.")
  return section


def _quant_scores(q: dict, metric: str) -> tuple[float, float] | None:
  fp32 = q["float32"]
  split = next(iter(fp32))
  if metric not in fp32[split]:
    return None
  scheme = next(iter(q["int8"]))
  return fp32[split][metric], q["int8"][scheme]["metrics"][split][metric]


def int8_section(results: Path) -> Section:
  runs = read_compare(results)
  chance = Chance(results)
  section = Section(
      "int8", "Table 8 int8", "Table 8: int8 dynamic quantization",
      "After post-training dynamic int8 quantization of the Linear layers, SAM's model loses "
      "less than Adam's.",
      _commands(results, [f"compare_{t}" for t in runs] + ["int8_glue"]),
      [f"compare_{t}" for t in runs] + ["int8_glue"])
  section.scale = _compare_scale(runs) + ("; int8 = PyTorch's quantize_dynamic recipe (per-"
                                          "tensor weights, dynamic activations), eval batch 32")
  section.table = [["task (metric)", "models"] + _DROP_HEADER]
  groups: list[tuple[str, str, str, list[tuple[int, dict, dict]]]] = []
  for task, rs in runs.items():
    metric = paper.TABLE8.get(paper.base_task(task), (None,))[0]
    pairs = []
    for r in rs:
      qa, qs = r.folder / "adam" / "quantize.json", r.folder / "sam" / "quantize.json"
      if qa.is_file() and qs.is_file():
        pairs.append((r.seed, _json(qa), _json(qs)))
    if pairs:
      if metric is None or _quant_scores(pairs[0][1], metric) is None:
        metric = _metric_key(rs[0].opt("adam")["metric"])
      groups.append((task, metric, "compare", pairs))
  legacy = results / "int8_glue"
  if legacy.is_dir():
    by_task: dict[str, dict[str, dict[str, dict]]] = {}
    for d in sorted(legacy.iterdir()):
      m = re.fullmatch(r"([a-z0-9]+)-(adam|sam)(?:-seed(\d+))?", d.name)
      if m and (d / "quantize.json").is_file():
        by_task.setdefault(m.group(1), {}).setdefault(m.group(3) or "0", {})[m.group(2)] = (
            _json(d / "quantize.json"))
    for task, seeds in by_task.items():
      metric = paper.TABLE8.get(task, ("accuracy",))[0]
      pairs = [(int(s), o["adam"], o["sam"]) for s, o in sorted(seeds.items())
               if "adam" in o and "sam" in o]
      if pairs and _quant_scores(pairs[0][1], metric) is not None:
        groups.append((task, metric, "int8_glue", pairs))
  for task, metric, source, pairs in groups:
    a = [_quant_scores(qa, metric) for _, qa, _ in pairs]
    s = [_quant_scores(qs, metric) for _, _, qs in pairs]
    diffs = [(ab - aa) - (sb - sa) for (ab, aa), (sb, sa) in zip(a, s)]
    seeds = [seed for seed, _, _ in pairs]
    level = chance.level(task, metric, seeds)
    testable = [V.seed_testable([ab, sb], [aa, sa], lv)
                for (ab, aa), (sb, sa), lv in zip(a, s, chance.per_seed(task, metric, seeds))]
    if metric != "accuracy":
      # The majority label's F1 is 0 where it is the negative class (QQP), so an F1 clears
      # it while the model is at chance: its accuracy must clear the majority label too.
      acc_levels = chance.per_seed(task, "accuracy", seeds)
      for i, ((_, qa, qs), lv) in enumerate(zip(pairs, acc_levels)):
        acc = [_quant_scores(qa, "accuracy"), _quant_scores(qs, "accuracy")]
        if all(acc):
          testable[i] = testable[i] and V.seed_testable(
              [acc[0][0], acc[1][0]], [acc[0][1], acc[1][1]], lv)
    verdict = V.verdict_by_seed(diffs, testable)
    note = _uncounted_note(task, seeds, testable, level)
    if note:
      section.notes.append(note)
    ref = paper.TABLE8.get(paper.base_task(task))
    if ref and ref[0] == metric:
      _, (pa_b, pa_a), (ps_b, ps_a) = ref
      paper_text = f"Adam {pa_b:.2f} → {pa_a:.2f}, SAM {ps_b:.2f} → {ps_a:.2f}"
      paper_says = "yes" if (pa_b - pa_a) > (ps_b - ps_a) else "no"
    else:
      paper_text, paper_says = "–", "–"
    where = ("compare run" if source == "compare" else
             "int8_glue (earlier models: SST-2 4,000 sentences; RTE full data)")
    section.table.append([
        f"{_task(task)} ({metric})", where, paper_text,
        V.fmt_transition([x[0] for x in a], [x[1] for x in a]),
        V.fmt_transition([x[0] for x in s], [x[1] for x in s]), V.fmt_seeds(diffs),
        str(len(pairs)), paper_says,
        verdict + ("" if level is None else f" (chance {V.fmt_chance(level)})")])
    section.findings.append(Finding(
        "int8: SAM loses less", f"{_task(task)} {metric} ({source})", paper_text,
        f"Adam {V.fmt_transition([x[0] for x in a], [x[1] for x in a])}, SAM "
        f"{V.fmt_transition([x[0] for x in s], [x[1] for x in s])}; Adam drop − SAM drop "
        f"{V.fmt_seeds(diffs)} ({_seeds(len(pairs))}{_counted(seeds, testable)})", verdict))
  return section


def _read_rounds_by_opt(folder: Path) -> dict[str, list[dict]]:
  return {d.name: jsonl.read(d / "rounds.jsonl") for d in sorted(folder.iterdir())
          if (d / "rounds.jsonl").is_file()}


def std_section(results: Path) -> Section:
  section = Section(
      "std", "Table 5 Std", "Table 5: Std pruning (no rewinding), Adam vs SAM",
      "Pruning by magnitude and continuing to train the pruned fine-tuned weights (Table 5's "
      "Std rows), SAM's model loses less than Adam's.",
      ["SEEDS=\"0 1\" bash experiments/std_sst2.sh"], [])
  section.table = [["task", "sparsity"] + _DROP_HEADER]
  chance = Chance(results)
  for task, folder in _task_folders(results, "std_"):
    section.folders.append(folder.name)
    per_seed = []
    for seed, d in _seed_dirs(folder):
      rounds = _read_rounds_by_opt(d)
      if "adam" in rounds and "sam" in rounds:
        per_seed.append((seed, rounds["adam"], rounds["sam"]))
    if not per_seed:
      continue
    cfg = _json(folder / f"seed{per_seed[0][0]}" / "adam" / "imp.json")
    section.scale = (f"{_task(task)}: {_scale_of(cfg.get('train', {}))}; "
                     f"{cfg.get('rounds')} rounds of {cfg.get('rate', 0):.0%}; seeds "
                     + ", ".join(str(s) for s, _, _ in per_seed))
    a = [(r[0]["metric"], r[-1]["metric"]) for _, r, _ in per_seed]
    s = [(r[0]["metric"], r[-1]["metric"]) for _, _, r in per_seed]
    diffs = [(ab - aa) - (sb - sa) for (ab, aa), (sb, sa) in zip(a, s)]
    metric = per_seed[0][1][0]["metric_name"]
    seeds = [seed for seed, _, _ in per_seed]
    level = chance.level(task, metric, seeds)
    testable = [V.seed_testable([ab, sb], [aa, sa], lv)
                for (ab, aa), (sb, sa), lv in zip(a, s, chance.per_seed(task, metric, seeds))]
    verdict = V.verdict_by_seed(diffs, testable)
    note = _uncounted_note(task, seeds, testable, level)
    if note:
      section.notes.append(note)
    sparsity = per_seed[0][1][-1]["sparsity"]
    ref = _table5_rows("std")(task)
    (pa_b, pa_a), (ps_b, ps_a) = ref
    paper_text = f"Adam {pa_b:.1f} → {pa_a:.1f}, SAM {ps_b:.1f} → {ps_a:.1f}"
    section.table.append([
        _task(task), f"{sparsity:.0%}", paper_text,
        V.fmt_transition([x[0] for x in a], [x[1] for x in a]),
        V.fmt_transition([x[0] for x in s], [x[1] for x in s]), V.fmt_seeds(diffs),
        str(len(per_seed)), "yes" if (pa_b - pa_a) > (ps_b - ps_a) else "no", verdict])
    section.findings.append(Finding("Std: SAM loses less", f"{_task(task)} {sparsity:.0%}",
                                    paper_text, f"Adam drop − SAM drop {V.fmt_seeds(diffs)} "
                                    f"({_seeds(len(per_seed))}{_counted(seeds, testable)})", verdict))
    png = folder / f"seed{per_seed[0][0]}" / "imp.png"
    if png.is_file():
      section.plots.append((f"{_task(task)} Std rounds, seed {per_seed[0][0]}",
                            str(png.relative_to(results))))
  return section


# ---------------------------------------------------------------------------------------------
# Tickets: Table 6 and transfer

def _tickets(folder: Path) -> dict[tuple[str, str], float]:
  return {(r["mask"], r["optimizer"]): r["metric"] for r in jsonl.read(folder / "tickets.jsonl")}


def table6_section(results: Path) -> Section:
  section = Section(
      "table6", "Table 6", "Table 6: mask source × final optimizer",
      "SAM's IMP mask is a better ticket than Adam's even when the ticket is fine-tuned with "
      "Adam, and both beat a random mask of the same per-tensor sparsities.",
      ["TABLE6_TASKS=sst2 SEEDS=\"0 1\" TRANSFER_TASKS=\"\" bash experiments/tickets_tasks.sh"],
      [])
  section.table = [["task (sparsity)", "mask", "paper Adam / SAM", "flatjax Adam", "flatjax SAM",
                    "seeds"]]
  for task, folder in _task_folders(results, "table6_"):
    section.folders.append(folder.name)
    grids = [(seed, _tickets(d)) for seed, d in _seed_dirs(folder)
             if (d / "tickets.jsonl").is_file()]
    if not grids:
      continue
    settings = _json(folder / f"seed{grids[0][0]}" / "tickets.json")
    section.scale = (f"{_task(task)}: {_scale_of(settings.get('train', {}))}; masks from the "
                     "compare runs' IMP of the same seed; seeds "
                     + ", ".join(str(s) for s, _ in grids))
    sparsity = paper_sparsity = jsonl.read(folder / f"seed{grids[0][0]}" / "tickets.jsonl")[0][
        "sparsity"]
    ref = paper.TABLE6.get(task, {})
    for mask in ("random", "adam", "sam"):
      cells = {o: [g[(mask, o)] for _, g in grids if (mask, o) in g] for o in ("adam", "sam")}
      p = ref.get(mask)
      section.table.append([
          f"{_task(task)} ({paper_sparsity:.0%})" if paper_sparsity else _task(task),
          mask, f"{p[0]} / {p[1]}" if p else "–", V.fmt_seeds(cells["adam"]),
          V.fmt_seeds(cells["sam"]), str(len(cells["adam"]))])
    for opt in ("adam", "sam"):
      diffs = [g[("sam", opt)] - g[("adam", opt)] for _, g in grids
               if ("sam", opt) in g and ("adam", opt) in g]
      i = 0 if opt == "adam" else 1
      p = (f"{ref['sam'][i]} vs {ref['adam'][i]}" if ref else "–")
      section.findings.append(Finding(
          f"Table 6: SAM mask beats Adam mask (fine-tuned with {opt})",
          f"{_task(task)} {sparsity:.0%}", p,
          f"SAM mask − Adam mask {V.fmt_seeds(diffs)} ({_seeds(len(diffs))})",
          V.verdict(diffs)))
    diffs = [min(g[("adam", o)], g[("sam", o)]) - g[("random", o)] for _, g in grids
             for o in ("adam", "sam") if all((m, o) in g for m in ("adam", "sam", "random"))]
    section.findings.append(Finding(
        "Table 6: IMP masks beat a random mask", f"{_task(task)} {sparsity:.0%}",
        f"random {ref['random'][0]} / {ref['random'][1]} vs IMP ≥ {min(ref['adam'])}"
        if ref else "–",
        f"weaker IMP mask − random {V.fmt_seeds(diffs)} (seed × optimizer)", V.verdict(diffs)))
  return section


def _transfer_pairs(folders: list[Path]) -> tuple[dict, dict[str, str], dict[str, str]]:
  """``(pairs, scales, metrics)``: (source, target) -> [(seed, Adam ticket, SAM ticket,
  sparsity)] in seed order; each target's scale and the metric its tickets were scored on."""
  pairs: dict[tuple[str, str], list[tuple[int, float, float, float]]] = {}
  scales: dict[str, str] = {}
  metrics: dict[str, str] = {}
  for seed, seed_dir in (pair for folder in folders for pair in _seed_dirs(folder)):
    for target_dir in sorted(d for d in seed_dir.iterdir() if (d / "tickets.jsonl").is_file()):
      target = target_dir.name
      scales.setdefault(target, _scale_of(_json(target_dir / "tickets.json")["train"]))
      by_mask = {r["mask"]: r for r in jsonl.read(target_dir / "tickets.jsonl")}
      for label, row in by_mask.items():
        source, _, opt = label.rpartition("-")
        if opt == "sam" and f"{source}-adam" in by_mask:
          metrics.setdefault(target, row.get("metric_name", "accuracy"))
          pairs.setdefault((source, target), []).append(
              (seed, by_mask[f"{source}-adam"]["metric"], row["metric"], row["sparsity"]))
  return pairs, scales, metrics


def _transfer_diagonal(results: Path, heat: dict, seeds: list[int], section: Section) -> None:
  """The heatmap's diagonal (a task's own tickets, fine-tuned with Adam): Table 6's, same
  seeds."""
  for source in list(heat):
    own = []
    for seed in seeds:
      grid = results / f"table6_{source}" / f"seed{seed}"
      cells = _tickets(grid) if (grid / "tickets.jsonl").is_file() else {}
      if ("sam", "adam") in cells and ("adam", "adam") in cells:
        own.append(cells[("sam", "adam")] - cells[("adam", "adam")])
    if own:
      heat[source][source] = V.mean(own)
      section.notes.append(f"The heatmap's {_task(source)} → {_task(source)} cell is Table 6's "
                           f"(same task, {_seeds(len(own))}); the verdict counts only "
                           "transfers.")


def transfer_section(results: Path) -> tuple[Section, dict[str, dict[str, float]]]:
  """The section and the heatmap values {source: {target: SAM ticket - Adam ticket}}, the
  mean over the seeds in ``transfer/seed<N>/<target>/`` and, for masks from compare runs
  with another SAM radius (sources labelled ``<task>_rho<R>``), ``transfer_rho<R>/``."""
  folders = sorted(d for d in results.glob("transfer*") if d.is_dir())
  section = Section(
      "transfer", "Ticket transfer", "Ticket transfer across tasks",
      "A ticket found with SAM on one task transfers to other tasks better than one found with "
      "Adam (the paper's heatmap of SAM ticket minus Adam ticket, 70% tickets).",
      ["TABLE6_TASKS=\"\" TRANSFER_TASKS=\"sst2 qnli\" TRANSFER_SEEDS=\"0 1\" "
       "bash experiments/tickets_tasks.sh"],
      [d.name for d in folders] or ["transfer"])
  for d in folders:
    if d.name.startswith("transfer_rho"):
      section.commands.append(f"TABLE6_TASKS=\"\" SOURCE_RHO={d.name[len('transfer_rho'):]} "
                              "TRANSFER_TARGETS=sst2 TRANSFER_SEEDS=\"0 1\" "
                              "bash experiments/tickets_tasks.sh")
  heat: dict[str, dict[str, float]] = {}
  if not folders:
    return section, heat
  pairs, scales, metrics = _transfer_pairs(folders)
  if not pairs:
    return section, heat
  section.table = [["source → target", "source sparsity", "Adam ticket", "SAM ticket",
                    "SAM − Adam", "target chance", "seeds"]]
  chance = Chance(results)
  compare = {(r.task, r.seed): r for rs in read_compare(results).values() for r in rs}
  diffs: list[float] = []
  uncounted: dict[str, list[str]] = {"target": [], "source": []}
  all_seeds = sorted({seed for rows in pairs.values() for seed, *_ in rows})
  for (source, target), rows in sorted(pairs.items()):
    seeds = [r[0] for r in rows]
    adam, sam = [r[1] for r in rows], [r[2] for r in rows]
    pair_diffs = [s - a for a, s in zip(adam, sam)]
    heat.setdefault(source, {})[target] = V.mean(pair_diffs)
    level = chance.level(target, metrics[target], seeds)
    pair = f"{_task(source)} → {_task(target)}"
    for seed, a, s, d in zip(seeds, adam, sam, pair_diffs):
      where = f"{pair} (seed {seed})"
      # Both tickets at the target's majority label: the pair says nothing.
      if not V.above_chance([max(a, s)], chance.level(target, metrics[target], [seed])):
        uncounted["target"].append(where)
      # A source model at its majority label: its mask is not the ticket of a trained model.
      elif not _source_trained(compare.get((source, seed)), chance, source, seed):
        uncounted["source"].append(where)
      else:
        diffs.append(d)
    section.table.append([pair, f"{rows[0][3]:.0%}", V.fmt_seeds(adam), V.fmt_seeds(sam),
                          V.fmt_seeds(pair_diffs), V.fmt_chance(level),
                          ", ".join(map(str, seeds))])
  section.scale = ("tickets fine-tuned with Adam on the target, masks from the compare run of "
                   "the same seed, each source's Adam and SAM masks at its reference sparsity; "
                   "seeds " + ", ".join(map(str, all_seeds)) + "; "
                   + "; ".join(f"{_task(t)}: {sc}" for t, sc in scales.items()))
  if any("_" in source for source, _ in pairs):
    section.scale += ("; a source named with SAM's ρ: both masks from the compare run made "
                      "with that radius (its Adam model is the default run's)")
  _transfer_diagonal(results, heat, all_seeds, section)
  if uncounted["target"]:
    section.notes.append("Not counted, both tickets at the target's majority label: "
                         + ", ".join(uncounted["target"]) + ".")
  if uncounted["source"]:
    section.notes.append("Not counted, the source task's Adam or SAM compare model within the "
                         "chance margin of its majority label, so its mask is no trained "
                         "model's ticket: " + ", ".join(uncounted["source"]) + ".")
  total = sum(len(rows) for rows in pairs.values())
  section.findings.append(Finding(
      "transfer: SAM tickets transfer better",
      f"{len(diffs)} of {total} task pair × seed{'s' if total != 1 else ''} testable",
      "heatmap mostly positive (figure)",
      f"SAM − Adam {V.fmt_seeds(diffs)}; {sum(d > 0 for d in diffs)} of {len(diffs)} positive"
      if diffs else "every pair × seed left out (notes); uncounted SAM − Adam "
      + V.fmt_seeds([s - a for rows in pairs.values() for _, a, s, _ in rows]),
      V.verdict(diffs) if diffs else V.NOT_TESTABLE))
  return section, heat


def _source_trained(run: CompareRun | None, chance: Chance, task: str, seed: int) -> bool:
  """Whether the compare run that found a transfer's masks trained both models above their
  task's chance level (True where the run's results are not in the results folder)."""
  if run is None or not (run.opt("adam") and run.opt("sam")):
    return True
  level = chance.level(task, run.opt("adam")["metric"], [seed])
  return all(V.above_chance([run.opt(o)["full"]], level) for o in ("adam", "sam"))


# ---------------------------------------------------------------------------------------------
# CoFi, sharpness, SWA, movement pruning, SAM variants

def cofi_section(results: Path) -> Section:
  section = Section(
      "cofi", "Table 2 CoFi", "Table 2: CoFi structured pruning with distillation",
      "Distilled and structurally pruned (CoFi) from a SAM teacher, the student keeps more "
      "accuracy than from an Adam teacher.",
      [], [])
  section.table = [["run", "seed", "target → reached (Adam / SAM)", "paper SST-2 (95%)",
                    "flatjax Adam teacher → pruned", "flatjax SAM teacher → pruned",
                    "Adam drop − SAM drop"]]
  chance = Chance(results)
  for folder in sorted(results.glob("cofi_*")):
    for run in sorted(d for d in folder.iterdir() if d.is_dir()):
      per_seed = [(seed, _json(d / "adam" / "results.json"), _json(d / "sam" / "results.json"))
                  for seed, d in _seed_dirs(run)
                  if (d / "adam" / "results.json").is_file()
                  and (d / "sam" / "results.json").is_file()]
      if not per_seed:
        continue
      section.folders.append(f"{folder.name}/{run.name}")
      task, key = per_seed[0][1]["task"], per_seed[0][1]["main_metric"]
      seeds = [seed for seed, _, _ in per_seed]
      section.commands += [c for c in _commands(run, [f"seed{seed}" for seed in seeds])
                           if c not in section.commands]
      before = [(a["teacher"][key], s["teacher"][key]) for _, a, s in per_seed]
      after = [(a["pruned"][key], s["pruned"][key]) for _, a, s in per_seed]
      diffs = [(ab - aa) - (sb - sa) for (ab, sb), (aa, sa) in zip(before, after)]
      level = chance.level(task, key, seeds)
      testable = [V.seed_testable(b, a, lv)
                  for b, a, lv in zip(before, after, chance.per_seed(task, key, seeds))]
      verdict = V.verdict_by_seed(diffs, testable)
      note = _uncounted_note(task, seeds, testable, level)
      if note:
        section.notes.append(f"{run.name}: {note}")
      p = paper.TABLE2.get(task)
      paper_text = (f"Adam {p[0][0]} → {p[0][1]}, SAM {p[1][0]} → {p[1][1]}" if p else "–")
      for (seed, a, s), (ab, sb), (aa, sa), diff in zip(per_seed, before, after, diffs):
        section.table.append([
            f"{folder.name}/{run.name}", str(seed),
            f"{a['target_sparsity']:.0%} → {a['sparsity']:.1%} / {s['sparsity']:.1%}",
            paper_text, V.fmt_transition([ab], [aa]), V.fmt_transition([sb], [sa]),
            V.fmt_signed(diff)])
      adam = V.fmt_transition([b[0] for b in before], [a[0] for a in after])
      sam = V.fmt_transition([b[1] for b in before], [a[1] for a in after])
      section.findings.append(Finding(
          "CoFi: SAM teacher's student loses less", f"{_task(task)}, {run.name}", paper_text,
          f"Adam {adam}, SAM {sam}; Adam drop − SAM drop {V.fmt_seeds(diffs)} "
          f"({_seeds(len(diffs))}{_counted(seeds, testable)})", verdict))
  section.scale = ("MiniLM teachers fine-tuned on SST-2 subsets, CoFi with fewer epochs and "
                   "lower targets than the paper's; see each run's README")
  return section


def _sharpness_pairs(folder: Path) -> list[tuple[int, dict, dict]]:
  """[(seed, adam sharpness.json, sam sharpness.json)] from ``folder/seed<N>/<opt>/``."""
  return [(seed, _json(d / "adam" / "sharpness.json"), _json(d / "sam" / "sharpness.json"))
          for seed, d in _seed_dirs(folder)
          if (d / "adam" / "sharpness.json").is_file()
          and (d / "sam" / "sharpness.json").is_file()]


def _sharpness_groups(results: Path) -> list[tuple[str, list[tuple[int, dict, dict]]]]:
  """(folder label, [(seed, adam, sam)]) for the CoFi teachers
  (``sharpness_<task>/seed<N>/<opt>/``) and the compare models
  (``sharpness_compare/<task>/seed<N>/<opt>/``)."""
  groups = [(folder.name, pairs) for folder in sorted(results.glob("sharpness_*"))
            if folder.name != "sharpness_compare" and (pairs := _sharpness_pairs(folder))]
  compare = results / "sharpness_compare"
  if compare.is_dir():
    groups += [(f"{compare.name}/{d.name}", pairs) for d in sorted(compare.iterdir())
               if d.is_dir() and (pairs := _sharpness_pairs(d))]
  return groups


def _sharpness_measures(a: dict) -> dict[str, float]:
  out = {f"ε-sharpness ×100, ε {k['epsilon']:g}": k["sharpness"] for k in a.get("keskar", [])}
  if a.get("hessian_top_eigenvalue"):
    out["Hessian top eigenvalue"] = a["hessian_top_eigenvalue"]["eigenvalue"]
  if a.get("hessian_trace"):
    out["Hessian trace"] = a["hessian_trace"]["trace"]
  return out


def sharpness_section(results: Path) -> Section:
  section = Section(
      "sharpness", "Tables 3/4 flatness", "Tables 3/4: flatness of the fine-tuned models",
      "SAM's fine-tuned model is flatter: lower Keskar epsilon-sharpness (Table 3); flatjax "
      "adds the Hessian's top eigenvalue and trace.",
      ["bash experiments/sharpness_sst2.sh"], [])
  section.table = [["models", "measure", "paper Adam / SAM", "flatjax Adam", "flatjax SAM",
                    "Adam − SAM (seeds)", "verdict"]]
  scales = []
  for label, pairs in _sharpness_groups(results):
    folder = label.split("/")[0]            # sharpness_compare/<task> -> sharpness_compare
    if folder not in section.folders:
      section.folders.append(folder)
    task = pairs[0][1]["task"]
    p = paper.TABLE3.get(task)
    measures = _sharpness_measures(pairs[0][1])
    for name in measures:
      va = [_sharpness_measures(a)[name] for _, a, _ in pairs]
      vs = [_sharpness_measures(s)[name] for _, _, s in pairs]
      diffs = [x - y for x, y in zip(va, vs)]
      ptext = (f"{p[0]} / {p[1]}" if p and name.endswith("ε 0.001") else
               "not reported" if name.startswith("Hessian") else "–")
      verdict = V.verdict(diffs)
      section.table.append([f"{_task(task)} ({label})", name, ptext, V.fmt_seeds(va),
                            V.fmt_seeds(vs), V.fmt_seeds(diffs), verdict])
      section.findings.append(Finding(
          f"SAM is flatter: {name}", f"{_task(task)} ({label}, {len(pairs)} seed"
          f"{'s' if len(pairs) > 1 else ''})", ptext,
          f"Adam {V.fmt_seeds(va)}, SAM {V.fmt_seeds(vs)}", verdict))
    sample = pairs[0][1].get("sample")
    scales.append(f"{label}: {_task(task)}, loss on "
                  f"{sample if isinstance(sample, str) else json.dumps(sample)}; "
                  f"{pairs[0][1].get('num_params', 0):,} parameters perturbed")
    if (results / label / "surface_1d.png").is_file():
      section.plots.append((f"1-D loss surfaces ({label})", f"{label}/surface_1d.png"))
  section.scale = "; ".join(scales)
  if "sharpness_sst2" in section.folders:
    section.scale += (". sharpness_sst2 measures the CoFi experiment's teachers (MiniLM, "
                      "4,000 SST-2 sentences, 2 epochs)")
  return section


def _oneshot_curves(path: Path) -> dict[str, list[dict]]:
  curves: dict[str, list[dict]] = {}
  for row in jsonl.read(path):
    curves.setdefault(row["label"], []).append(row)
  for rows in curves.values():
    rows.sort(key=lambda r: r["target_sparsity"])
  return curves


def swa_section(results: Path) -> Section:
  folder = results / "swa_sst2"
  section = Section(
      "swa", "SWA", "SWA, the paper's third baseline",
      "The paper fine-tunes with stochastic weight averaging as another route to flat minima "
      "(the paper's text gives no SWA numbers here). Measured: does the SWA model compress "
      "like SAM's?", ["SEEDS=\"0 1\" bash experiments/swa_sst2.sh"], ["swa_sst2"])
  if not folder.is_dir():
    return section
  compare = {r.seed: r for r in read_compare(results).get("sst2", [])}
  section.table = [["seed", "model", "dense", "one-shot 60% (change)", "int8 (change)"]]
  drops: dict[str, dict[str, list[float]]] = {}
  for seed, d in _seed_dirs(folder):
    if not (d / "oneshot.jsonl").is_file():
      continue
    section.scale = ("SST-2: " + _scale_of(_json(d / "config.json")["config"]) +
                     f"; SWA recipe {recorded(_json(d / 'config.json')['config']).get('swa')}")
    curves = _oneshot_curves(d / "oneshot.jsonl")
    int8 = {"swa": _quant_scores(_json(d / "quantize.json"), "accuracy")}
    if seed in compare:
      for opt in ("adam", "sam"):
        q = compare[seed].folder / opt / "quantize.json"
        if q.is_file():
          int8[opt] = _quant_scores(_json(q), "accuracy")
    for label in ("adam", "sam", "swa"):
      rows = curves.get(label)
      if not rows:
        continue
      dense, last = rows[0]["metric"], rows[-1]["metric"]
      q = int8.get(label)
      drops.setdefault(label, {}).setdefault("oneshot", []).append(dense - last)
      if q:
        drops[label].setdefault("int8", []).append(q[0] - q[1])
      section.table.append([str(seed), label, V.fmt(dense),
                            f"{V.fmt(last)} ({V.fmt_signed(last - dense)})",
                            f"{V.fmt(q[1])} ({V.fmt_signed(q[1] - q[0])})" if q else "–"])
  names = {"adam": "Adam", "swa": "SWA", "sam": "SAM"}
  for kind in ("oneshot", "int8"):
    # Each claim "B loses less than A" is measured as A's drop − B's drop, per seed.
    for worse, better in (("adam", "swa"), ("swa", "sam")):
      a, b = drops.get(worse, {}).get(kind, []), drops.get(better, {}).get(kind, [])
      if not (a and b and len(a) == len(b)):
        continue
      diffs = [x - y for x, y in zip(a, b)]
      section.findings.append(Finding(
          f"{names[better]} loses less than {names[worse]} ({kind})", "SST-2",
          "no number in the paper's text",
          f"{names[worse]} drop − {names[better]} drop {V.fmt_seeds(diffs)} "
          f"({_seeds(len(diffs))})", V.verdict(diffs)))
  first = _seed_dirs(folder)
  if first and (first[0][1] / "oneshot.png").is_file():
    section.plots.append((f"one-shot curves, seed {first[0][0]}",
                          f"swa_sst2/seed{first[0][0]}/oneshot.png"))
  return section


def movement_section(results: Path) -> Section:
  folder = results / "movement_sst2"
  section = Section(
      "movement", "Movement pruning", "Beyond the paper: movement pruning × {Adam, SAM}",
      "Open question: does SAM also help movement pruning (Sanh et al. 2020)? Measured as the "
      "dev score at the end of pruning to 60% during fine-tuning.",
      ["SEEDS=\"0 1\" bash experiments/movement_sst2.sh"], ["movement_sst2"])
  if not folder.is_dir():
    return section
  compare = {r.seed: r for r in read_compare(results).get("sst2", [])}
  section.table = [["seed", "optimizer", "sparsity", "movement-pruned dev (best at final "
                    "sparsity)", "dense fine-tuned (compare)", "IMP 60% (compare)"]]
  diffs, ends = [], {"adam": [], "sam": []}
  for seed, d in _seed_dirs(folder):
    scores = {}
    for opt in ("adam", "sam"):
      f = d / opt / "results.json"
      if not f.is_file():
        continue
      r = _json(f)
      key = next(k for k in r["best"] if k != "step")
      scores[opt] = r["best"][key]
      section.scale = "SST-2: " + _scale_of(_json(d / opt / "config.json")["config"]) + (
          "; per-tensor top-k of the movement scores, cubic schedule 10% → 70% of the run")
      c = compare.get(seed)
      co = c.opt(opt) if c else None
      section.table.append([str(seed), opt, f"{r.get('sparsity', 0):.0%}", V.fmt(scores[opt]),
                            V.fmt(co["full"]) if co else "–", V.fmt(co["imp"]) if co else "–"])
    if len(scores) == 2:
      diffs.append(scores["sam"] - scores["adam"])
      for opt in ends:
        ends[opt].append(scores[opt])
  chance = Chance(results).level("sst2", "accuracy")
  # Both pruned models at the majority label: the comparison says nothing.
  testable = any(V.above_chance(v, chance) for v in ends.values())
  if diffs:
    section.findings.append(Finding(
        "movement pruning: SAM ends higher than Adam", "SST-2 60%", "open question (not in "
        "the paper)", f"Adam {V.fmt_seeds(ends['adam'])}, SAM {V.fmt_seeds(ends['sam'])}; "
        f"SAM − Adam {V.fmt_seeds(diffs)} ({_seeds(len(diffs))})", V.verdict(diffs, testable)))
  if chance is not None:
    section.notes.append(f"Always predicting the majority label scores {chance.score:.2f} on "
                         f"this dev set; a model within {chance.margin:.2f} points of it (two "
                         "standard errors) is not told apart from it.")
  return section


def _sam_overhead(path: Path) -> dict[str, float]:
  if not path.is_file():
    return {}
  rows = [r for r in jsonl.read(path) if "ratio_to_adam" in r]
  return rows[-1]["ratio_to_adam"] if rows else {}


def variants_section(results: Path, overhead: Path) -> tuple[Section, list[dict]]:
  """The section and one point per optimizer and seed for the cost plot."""
  folder = results / "variants_sst2"
  section = Section(
      "variants", "SAM variants", "Beyond the paper: the efficient SAM variants' compressibility against cost",
      "Open question: do cheaper variants (LookSAM, ASAM, GSAM) keep SAM's compressibility at "
      "a fraction of its cost? Compressibility: the accuracy lost to one-shot pruning to 60% "
      "(no retraining) and to int8; cost: a train step relative to Adam's.",
      ["SEEDS=\"0 1\" bash experiments/variants_sst2.sh",
       "python benchmarks/sam_overhead.py --repeats 5 --output "
       "benchmarks/results/sam_overhead_cpu.jsonl"], ["variants_sst2"])
  points: list[dict] = []
  if not folder.is_dir():
    return section, points
  measured = _sam_overhead(overhead)

  def cost(label: str) -> float | None:
    # A variant run with other settings ("looksam-alpha0.1") costs what its optimizer does.
    return measured.get(label, measured.get(label.split("-", 1)[0]))

  compare = {r.seed: r for r in read_compare(results).get("sst2", [])}
  section.table = [["optimizer", "step cost × Adam (CPU)", "dense dev", "one-shot 60% drop",
                    "int8 drop", "seeds"]]
  per_opt: dict[str, dict[str, list[float]]] = {}
  for seed, d in _seed_dirs(folder):
    if not (d / "oneshot.jsonl").is_file():
      continue
    curves = _oneshot_curves(d / "oneshot.jsonl")
    for label, rows in curves.items():
      q_path = d / label / "quantize.json"
      if not q_path.is_file() and seed in compare:
        q_path = compare[seed].folder / label / "quantize.json"
      q = _quant_scores(_json(q_path), "accuracy") if q_path.is_file() else None
      dense, last = rows[0]["metric"], rows[-1]["metric"]
      entry = per_opt.setdefault(label, {"dense": [], "oneshot": [], "int8": []})
      entry["dense"].append(dense)
      entry["oneshot"].append(dense - last)
      if q:
        entry["int8"].append(q[0] - q[1])
      points.append({"optimizer": label, "seed": seed, "cost": cost(label),
                     "oneshot_drop": dense - last, "int8_drop": q[0] - q[1] if q else None})
      cfg = d / label / "config.json"
      if cfg.is_file():
        section.scale = ("SST-2: " + _scale_of(_json(cfg)["config"]) + "; step cost from "
                         "benchmarks/sam_overhead.py (batch 32, length 128, side by side)")
  for label, e in per_opt.items():
    section.table.append([label, V.fmt(cost(label)), V.fmt_seeds(e["dense"]),
                          V.fmt_seeds(e["oneshot"]), V.fmt_seeds(e["int8"]),
                          str(len(e["dense"]))])
  adam = per_opt.get("adam")
  chance = Chance(results).level("sst2", "accuracy")
  for label, e in per_opt.items():
    if label == "adam" or not adam:
      continue
    testable = V.above_chance(e["dense"], chance)
    if not testable:
      section.notes.append(f"**{label} did not learn at this scale**: its fine-tuned model "
                           f"scores {V.fmt_seeds(e['dense'])}, within "
                           f"{V.fmt(chance.margin)} points of the majority label's "
                           f"{V.fmt(chance.score)}, so its compressibility is not measurable.")
    for kind in ("oneshot", "int8"):
      if len(e[kind]) == len(adam[kind]) and e[kind]:
        diffs = [x - y for x, y in zip(adam[kind], e[kind])]
        section.findings.append(Finding(
            f"{label} loses less than Adam ({kind})", "SST-2",
            "open question (not in the paper)",
            f"dense {V.fmt_seeds(e['dense'])}; Adam drop − {label} drop {V.fmt_seeds(diffs)} "
            f"({_seeds(len(diffs))}); cost {V.fmt(cost(label))}× Adam",
            V.verdict(diffs, testable)))
  return section, points


# ---------------------------------------------------------------------------------------------
# Everything else

def _made_by(readme: Path) -> str | None:
  """The command in a results README's "Made by `...`" line."""
  m = re.search(r"Made by\s+`([^`]+)`", readme.read_text())
  return m.group(1) if m else None


def readme_title(readme: Path) -> str:
  for line in readme.read_text().splitlines():
    if line.startswith("# "):
      return line[2:].strip()
  return readme.parent.name
