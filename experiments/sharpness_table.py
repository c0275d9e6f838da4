"""The markdown summary of a flatness comparison, and the 1-D surfaces overlaid:
``python experiments/sharpness_table.py RESULTS_DIR [COMMAND]``.

RESULTS_DIR holds ``seed<N>/<optimizer>/`` folders, each with a ``flatjax sharpness`` run's
``sharpness.json`` (and its PNGs); writes ``RESULTS_DIR/surface_1d.png`` with every model's
1-D surface.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from flatjax.sharpness import surface

# Table 3 of the paper (bert-base, epsilon 1e-3, x100), SST-2.
PAPER_SST2 = {"adam": 4.5, "sam": 2.2}


def main(folder: str, command: str | None = None) -> None:
  root = Path(folder)
  runs = {(int(seed_dir.name[len("seed"):]), p.name): json.loads((p / "sharpness.json").read_text())
          for seed_dir in sorted(root.glob("seed*"), key=lambda d: int(d.name[len("seed"):]))
          for p in sorted(seed_dir.iterdir()) if (p / "sharpness.json").is_file()}
  print("# Flatness of the fine-tuned models: epsilon-sharpness, Hessian, loss surfaces\n")
  if command:
    print(f"Made by `{command}`.\n")
  if not runs:
    return
  first = next(iter(runs.values()))
  eps = [r["epsilon"] for r in first["keskar"]]
  sample = first["sample"]
  head = " | ".join(f"eps-sharpness {e:g} (x100)" for e in eps)
  print(f"| seed | optimizer | loss | {head} | top Hessian eigenvalue | Hessian trace (± s.e.) | "
        "paper SST-2 eps-sharpness 1e-3 (bert-base) |")
  print("|---" * (6 + len(eps)) + "|")
  curves = {}
  for (seed, name), r in runs.items():
    values = " | ".join(f"{k['sharpness']:.2f}" for k in r["keskar"])
    top = r.get("hessian_top_eigenvalue", {})
    trace = r.get("hessian_trace", {})
    top_text = (f"{top['eigenvalue']:.1f}" + ("" if top.get("converged") else " (not converged)")
                if top else "-")
    trace_text = f"{trace['trace']:.0f} ± {trace['stderr']:.0f}" if trace else "-"
    print(f"| {seed} | {name} | {r['loss']:.4f} | {values} | {top_text} | {trace_text} | "
          f"{PAPER_SST2.get(name, '-')} |")
    if "surface_1d" in r:
      curves[f"{name} (seed {seed})"] = surface.Surface1D(
          np.asarray(r["surface_1d"]["alphas"]), np.asarray(r["surface_1d"]["losses"]))
  print(f"\nTask {first['task']}; the loss is the training loss (dropout off) on a fixed "
        f"sample of {sample['examples']} {sample['split']} examples (seed "
        f"{first['config']['seed']}), max length {sample['max_length']}; "
        f"{first['num_params']:,} params, all perturbed (full space). "
        f"L-BFGS-B iterations: {first['config']['maxiter']}. A seed is the seed of the "
        "teachers' fine-tuning (their training subset and initialisation).")
  if curves:
    surface.plot_surface_1d(curves, root / "surface_1d.png",
                            title=f"{first['task']}: loss along a filter-normalised direction")
    print("\n![1-D loss surfaces](surface_1d.png)\n")
  for seed, name in runs:
    png = f"seed{seed}/{name}/surface_2d.png"
    if (root / png).is_file():
      print(f"{name}, seed {seed}: ![2-D loss surface of {name}, seed {seed}]({png})\n")


if __name__ == "__main__":
  main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None)
