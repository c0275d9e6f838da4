"""Markdown for the report, and the two plots it draws from other experiments' numbers."""

from __future__ import annotations

from pathlib import Path

from flatjax import figures
from paper import numbers as paper
from paper.legacy import verdicts as V
from paper.legacy.sections import Section


def table(rows: list[list[str]]) -> list[str]:
  if not rows:
    return []
  head, *body = rows
  esc = lambda c: str(c).replace("|", "\\|")
  return (["| " + " | ".join(esc(c) for c in head) + " |",
           "|" + "---|" * len(head)]
          + ["| " + " | ".join(esc(c) for c in r) + " |" for r in body])


def scoreboard(sections: list[Section]) -> list[str]:
  """One line per tested claim, every section."""
  rows = [["item", "claim", "where", "paper (bert-base)", "flatjax (MiniLM, CPU scale)",
           "verdict"]]
  for s in sections:
    if not s.findings:
      rows.append([f"[{s.short}](#{s.key})", "–", "–", "–", "not run yet",
                   V.NO_DATA])
    for f in s.findings:
      rows.append([f"[{s.short}](#{s.key})", f.claim, f.setting, f.paper,
                   f.flatjax, f"**{f.verdict}**"])
  return table(rows)


def section_markdown(s: Section) -> list[str]:
  lines = [f'<a id="{s.key}"></a>', f"## {s.title}", "", f"**Claim.** {s.claim}", ""]
  if s.empty:
    lines += ["**Not run yet**: no results under " + ", ".join(f"`{f}/`" for f in s.folders)
              if s.folders else "**Not run yet.**", ""]
  if s.scale:
    lines += [f"**Scale.** {s.scale}.", ""]
  if s.commands:
    lines += ["**Made by**", ""] + [f"    {c}" for c in s.commands] + [""]
  if s.folders:
    lines += ["Results: " + ", ".join(f"[`{f}/`]({f}/)" for f in s.folders), ""]
  if len(s.table) > 1:
    lines += table(s.table) + [""]
  for caption, path in s.plots:
    lines += [f"![{caption}]({path})", ""]
  for note in s.notes:
    lines += [note, ""]
  return lines


def plot_transfer(heat: dict[str, dict[str, float]], path: Path) -> Path | None:
  """Heatmap of SAM ticket minus Adam ticket, sources as rows and targets as columns."""
  if not heat:
    return None
  import numpy as np
  plt = figures.pyplot()
  sources = sorted(heat, key=paper.task_rank)
  targets = sorted({t for row in heat.values() for t in row}, key=paper.task_rank)
  grid = np.full((len(sources), len(targets)), np.nan)
  for i, src in enumerate(sources):
    for j, dst in enumerate(targets):
      if dst in heat[src]:
        grid[i, j] = heat[src][dst]
  bound = max(1.0, float(np.nanmax(np.abs(grid))))
  fig, ax = plt.subplots(figsize=(1.3 * len(targets) + 3, 1.1 * len(sources) + 1.2))
  im = ax.imshow(grid, cmap="RdBu", vmin=-bound, vmax=bound)
  ax.set_xticks(range(len(targets)), [paper.task_label(t) for t in targets])
  ax.set_yticks(range(len(sources)), [paper.task_label(t) for t in sources])
  ax.set_xlabel("fine-tuned on (target)")
  ax.set_ylabel("ticket found on (source)")
  for i in range(len(sources)):
    for j in range(len(targets)):
      if not np.isnan(grid[i, j]):
        ax.text(j, i, f"{grid[i, j]:+.1f}", ha="center", va="center")
  fig.colorbar(im, ax=ax, label="SAM ticket − Adam ticket (points)")
  ax.set_title("Ticket transfer")
  return figures.save(fig, path, dpi=110)


def plot_variants(points: list[dict], path: Path) -> Path | None:
  """Accuracy lost to one-shot pruning and to int8 against a step's cost, per optimizer."""
  points = [p for p in points if p.get("cost") is not None]
  if not points:
    return None
  plt = figures.pyplot()
  colors = {name: f"C{i}" for i, name in enumerate(sorted({p["optimizer"] for p in points}))}
  fig, axes = plt.subplots(1, 2, figsize=(10, 4))
  for ax, key, title in zip(axes, ("oneshot_drop", "int8_drop"),
                            ("one-shot pruning to 60%", "int8 dynamic")):
    for p in points:
      if p.get(key) is None:
        continue
      ax.scatter(p["cost"], p[key], color=colors[p["optimizer"]])
      ax.annotate(f"{p['optimizer']} s{p['seed']}", (p["cost"], p[key]), fontsize=8,
                  xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("train step cost (× Adam, CPU)")
    ax.set_ylabel("dev accuracy lost (points)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
  return figures.save(fig, path, dpi=110)
