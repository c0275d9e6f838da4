"""Tabulates finished runs: python experiments/summarize_runs.py RUN... --out DIR

Writes DIR/summary.csv and DIR/summary.json (one row per run: optimizer, seed,
best and final dev scores, steps, training seconds, seconds per step) and
prints the mean and spread per optimizer.
"""

import argparse
import csv
import json
import statistics
from pathlib import Path

from flatjax.train.runs import recorded


def row_of(run: Path) -> dict:
  config = recorded(json.loads((run / "config.json").read_text())["config"])
  results = json.loads((run / "results.json").read_text())
  best_key = next(k for k in results["best"] if "/" in k)
  row = {"run": run.name, "optimizer": config["optimizer"],
         "optimizer_args": json.dumps(config.get("settings", config.get("optimizer_args", {})),
                                      sort_keys=True),
         "seed": config["seed"], "steps": results["step"],
         f"best_{best_key}": results["best"][best_key], "best_step": results["best"]["step"]}
  row.update({f"final_{k}": v for k, v in results["final"].items()})
  if "swa" in results:
    row.update({f"swa_{k}": v for k, v in results["swa"].items()})
  row["train_seconds"] = results["train_seconds"]
  row["seconds_per_step"] = round(results["train_seconds"] / results["step"], 3)
  return row


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("run", type=Path, nargs="+")
  parser.add_argument("--out", type=Path, required=True)
  args = parser.parse_args()
  rows = [row_of(run) for run in args.run]
  args.out.mkdir(parents=True, exist_ok=True)
  keys = list(dict.fromkeys(k for r in rows for k in r))
  with (args.out / "summary.csv").open("w", newline="") as f:
    writer = csv.DictWriter(f, keys)
    writer.writeheader()
    writer.writerows(rows)
  (args.out / "summary.json").write_text(json.dumps(rows, indent=2) + "\n")
  metric = next(k for k in keys if k.startswith("best_"))
  for opt in dict.fromkeys(r["optimizer"] for r in rows):
    values = [r[metric] for r in rows if r["optimizer"] == opt]
    secs = [r["seconds_per_step"] for r in rows if r["optimizer"] == opt]
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    print(f"{opt}: {metric} {statistics.fmean(values):.2f} +- {spread:.2f} over "
          f"{len(values)} seeds ({', '.join(f'{v:.2f}' for v in values)}); "
          f"{statistics.fmean(secs):.2f} s/step")


if __name__ == "__main__":
  main()
