"""Plots of a metric against sparsity (IMP rounds, one-shot pruning, tickets).

Only drivers and experiment runners call these; they write PNG files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flatjax import figures


def plot_sparsity_curves(curves: dict[str, list[dict[str, Any]]], out: str | Path, *,
                         title: str = "", metric_label: str | None = None) -> Path:
  """One line per label: ``metric`` (after retraining, solid) against
  ``target_sparsity`` (or ``sparsity``), and ``before_retraining`` (dashed)
  where the rows carry it (IMP rounds). Rows: dicts from ``rounds.jsonl`` or
  ``oneshot.jsonl``."""
  plt = figures.pyplot()
  fig, ax = plt.subplots(figsize=(6.4, 4.2))
  name = metric_label
  for i, (label, rows) in enumerate(curves.items()):
    color = f"C{i}"
    xs = [100 * r.get("target_sparsity", r.get("sparsity", 0.0)) for r in rows]
    ax.plot(xs, [r["metric"] for r in rows], "o-", color=color, label=label)
    before = [(x, r["before_retraining"][r["metric_name"]])
              for x, r in zip(xs, rows) if r.get("before_retraining")]
    if before:
      ax.plot(*zip(*before), "x--", color=color, alpha=0.7,
              label=f"{label}: pruned, before retraining")
    name = name or (rows[0].get("metric_name") if rows else None)
  ax.set(xlabel="sparsity of the prunable weights (%)", ylabel=f"dev {name or 'metric'}",
         title=title)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  return figures.save(fig, out)
