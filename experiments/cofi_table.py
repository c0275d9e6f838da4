"""The markdown summary of a CoFi comparison: ``python experiments/cofi_table.py RESULTS_DIR [COMMAND]``.

RESULTS_DIR holds one folder per teacher optimizer, each with the ``results.json``,
``cofi.json`` and ``structure.json`` of a ``flatjax cofi`` run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(folder: str, command: str | None = None) -> None:
  root = Path(folder)
  runs = sorted(p for p in root.iterdir() if (p / "results.json").is_file())
  print("# CoFi: teacher -> structurally pruned student\n")
  if command:
    print(f"Made by `{command}`.\n")
  print("| teacher optimizer | teacher dev | pruned dev | target | sparsity reached | "
        "encoder weights kept | hidden | heads per layer | FFN neurons per layer | "
        "inference speed-up (teacher -> pruned ex/s) |")
  print("|---|---|---|---|---|---|---|---|---|---|")
  for run in runs:
    r = json.loads((run / "results.json").read_text())
    main_metric = r["main_metric"]
    s = r["structure"]
    print(f"| {run.name} | {r['teacher'][main_metric]:.2f} | {r['pruned'][main_metric]:.2f} | "
          f"{r['target_sparsity']:.0%} | {r['sparsity']:.1%} | "
          f"{r['encoder_params']['pruned']:,} of {r['encoder_params']['teacher']:,} | "
          f"{s['hidden']} | {s['heads']} | {s['neurons']} | {r['speedup']:.2f}x "
          f"({r['examples_per_s']['teacher']:.0f} -> {r['examples_per_s']['pruned']:.0f}) |")
  if runs:
    settings = json.loads((runs[0] / "cofi.json").read_text())
    print(f"\nTask {settings['task']}, metric `{main_metric}`; data {settings['data']}; "
          f"student: `--student {settings['config']['student']}` (each run's own teacher "
          "when `teacher`).")
    print("\nInference speed: dev examples per second of the jitted deterministic forward "
          "pass, teacher and exported student alternating, best of 3, measured at the end of "
          "each run on whatever machine ran it. On a shared 2-core CPU it moves with the load "
          "of other jobs (compare the teachers' own ex/s across rows); "
          "`benchmarks/cofi_speed.py` measures speed-ups side by side in one process.")
    print("\nSettings of every run (cofi.json):\n")
    print("```json\n" + json.dumps(settings["config"], indent=1) + "\n```")


if __name__ == "__main__":
  main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None)
