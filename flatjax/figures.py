"""Figures written to files: matplotlib without a display, saved one way everywhere."""

from __future__ import annotations

from pathlib import Path


def pyplot():
  """matplotlib's pyplot on the Agg backend (files only, no display); imported
  on first use, so that nothing but plotting pays for matplotlib."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  return plt


def save(fig, out: str | Path, dpi: int = 120) -> Path:
  """Lays ``fig`` out, writes it to ``out`` (folders made as needed), closes it."""
  out = Path(out)
  out.parent.mkdir(parents=True, exist_ok=True)
  fig.tight_layout()
  fig.savefig(out, dpi=dpi)
  pyplot().close(fig)
  return out
