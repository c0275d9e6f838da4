"""An item's rows -> ``results.jsonl``, a generated ``README.md`` and a plot of its curves
(dev score against sparsity, or the sharpness item's loss surfaces)."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from statistics import mean

from flatjax import figures, files
from flatjax.sharpness.surface import Surface1D, plot_surface_1d
from experiments.collect import ROWS_FILE, label

#: Known compressions in the tables' order, with their column titles; others follow by name.
COMPRESSIONS = {"imp": "IMP", "std": "Std (no rewinding)", "oneshot": "one-shot",
                "int8": "int8", "cofi": "CoFi", "movement": "movement pruning"}


def _cells(rows: list[dict]) -> dict:
  """(task, metric, model label) -> compression -> the rows of each seed at the item's
  target: the rows with a base and, of a compression measured without one (movement
  pruning's end point: no dense model in its run), the rows at its highest sparsity."""
  model = lambda r: (r["task"], label(r), r["compression"])
  with_base = {model(r) for r in rows if r.get("base") is not None}
  top: dict = {}
  for r in rows:
    top[model(r)] = max(top.get(model(r), 0.0), r["sparsity"] or 0.0)
  cells: dict = defaultdict(lambda: defaultdict(list))
  for r in rows:
    end = model(r) not in with_base and (r["sparsity"] or 0.0) == top[model(r)]
    if r["compression"] == "none" or r.get("base") is not None or end:
      cells[(r["task"], r["metric"].split("/")[-1], label(r))][r["compression"]].append(r)
  return cells


def _fmt(rows: list[dict]) -> str:
  """``"77.87 (−0.91)"``: the mean score over seeds and its mean change from the base."""
  if not rows:
    return "–"
  score = mean(r["score"] for r in rows)
  if rows[0]["compression"] == "none" or any(r.get("base") is None for r in rows):
    return f"{score:.2f}"
  return f"{score:.2f} ({mean(r['score'] - r['base'] for r in rows):+.2f})"


def table(config: dict, rows: list[dict]) -> str:
  """Markdown: per task and optimizer, the fine-tuned model's dev score and each
  compression's (its change from the model it compressed), means over seeds."""
  present = {r["compression"] for r in rows} - {"none"}
  columns = [c for c in COMPRESSIONS if c in present] + sorted(present - set(COMPRESSIONS))
  titles = ["task", "optimizer", "seeds", "fine-tuned",
            *(f"{COMPRESSIONS.get(c, c)} (change)" for c in columns), "revision"]
  lines = ["| " + " | ".join(titles) + " |", "|" + "---|" * len(titles)]
  for (task, metric, opt), by in _cells(rows).items():
    seeds = sorted({r["seed"] for c in by.values() for r in c})
    sparsity = next((r["sparsity"] for c in by if c != "none" for r in by[c] if r["sparsity"]),
                    None)
    revisions = sorted({r["revision"] for c in by.values() for r in c})
    lines.append(f"| {task} ({metric}" + (f", {sparsity:.0%}" if sparsity else "") + f") | {opt} | "
                 f"{', '.join(map(str, seeds))} | {_fmt(by['none'])} | "
                 + "".join(f"{_fmt(by[c])} | " for c in columns)
                 + f"{', '.join(revisions)} |")
  return "\n".join(lines)


#: The compressions drawn as curves of the dev score against sparsity, with their line style.
CURVES = {"imp": "-", "std": "-.", "oneshot": "--"}


def plot(rows: list[dict], out: Path) -> Path | None:
  """Per task: the dev score against sparsity, one line per model and compression of
  :data:`CURVES` (from the fine-tuned model at 0%), one colour per model, means over seeds;
  None (nothing written) for an item without such a curve."""
  drawn = {(r["task"], label(r), r["compression"]) for r in rows if r["compression"] in CURVES}
  curves: dict = defaultdict(lambda: defaultdict(list))
  for r in rows:
    kinds = ([k for k in CURVES if (r["task"], label(r), k) in drawn]
             if r["compression"] == "none" else [r["compression"]])
    for kind in kinds:
      if kind in CURVES:
        curves[r["task"]][(label(r), kind, r["sparsity"])].append(r["score"])
  if not curves:
    return None
  plt = figures.pyplot()
  tasks = sorted(curves)
  fig, axes = plt.subplots(1, len(tasks), figsize=(3.2 * len(tasks), 3), squeeze=False)
  for ax, task in zip(axes[0], tasks):
    lines: dict = defaultdict(list)
    for (opt, kind, sparsity), scores in curves[task].items():
      lines[(opt, kind)].append((sparsity, mean(scores)))
    colours = {}
    for (opt, kind), points in sorted(lines.items()):
      colour = colours.setdefault(opt, f"C{len(colours)}")
      xs, ys = zip(*sorted(points))
      ax.plot([100 * x for x in xs], ys, CURVES[kind], color=colour,
              marker="o", ms=3, label=f"{opt} {kind}")
    ax.set_title(task)
    ax.set_xlabel("sparsity (%)")
  axes[0][0].set_ylabel("dev score")
  axes[0][-1].legend(fontsize=7)
  fig.tight_layout()
  return figures.save(fig, out)


def plot_surfaces(rows: list[dict], out: Path) -> Path | None:
  """The 1-D loss surfaces the rows carry (``curve``: a model's loss along a filter-normalised
  random direction, the sharpness item's), one line per model and seed, in one figure; None
  (nothing written) for an item without them."""
  curves = {f"{r['task']} {label(r)} seed {r['seed']}": Surface1D(**r["curve"])
            for r in sorted(rows, key=lambda r: (r["task"], label(r), r["seed"]))
            if r.get("curve")}
  if not curves:
    return None
  return plot_surface_1d(curves, out, title="loss along one filter-normalised direction")


def readme(config: dict, rows: list[dict], figure: bool = True) -> str:
  """The item's generated summary (``figure``: with its plot)."""
  item = config["item"]
  revisions = sorted({r["revision"] for r in rows})
  return "\n".join([
      f"# {config['title']}", "",
      f"Generated by `{config.get('made_by') or f'python -m experiments.run {item} --record'}` "
      f"from `{ROWS_FILE}` "
      f"(one row per task, seed, optimizer and compression; revisions {', '.join(revisions)}). "
      "The claims' intervals are in [the report](../README.md).", "",
      f"**Claim.** {config['claim']}", "",
      f"**Scale.** {config['scale']}.", "",
      "**Made by**", "",
      f"    {config.get('made_by') or f'python -m experiments.run {item} --record'}", "",
      *_earlier(rows),
      table(config, rows), "",
      "Each change is the compressed model's dev score minus the score of the model it "
      "compressed, in the same evaluation; means over the seeds listed.", "",
      *([f"![curves]({item}.png)", ""] if figure else [])])


def _earlier(rows: list[dict]) -> list[str]:
  """Where rows came from the shell scripts before the runner: their commands, and the
  commit that added them (those runs did not record their own revision)."""
  made: dict = defaultdict(set)
  for r in rows:
    if r.get("command"):
      made[r["command"]].add(r["revision"])
  if not made:
    return []
  return (["Rows with a `command` field were made before the runner existed, by the commands "
           "below at about the revision given (the commit that added their results; the runs "
           "kept no dev predictions):", ""]
          + [f"- `{command}` ({', '.join(sorted(revs))})" for command, revs in sorted(made.items())]
          + [""])


def write(config: dict, rows: list[dict], out: Path) -> Path:
  """Writes ``results.jsonl``, ``README.md`` and ``ITEM.png`` into ``out``."""
  out = Path(out)
  out.mkdir(parents=True, exist_ok=True)
  files.write_text(out / ROWS_FILE, "".join(json.dumps(r) + "\n" for r in rows))
  figure = (plot(rows, out / f"{config['item']}.png")
            or plot_surfaces(rows, out / f"{config['item']}.png"))
  files.write_text(out / "README.md", readme(config, rows, figure is not None))
  return out
