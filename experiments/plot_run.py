"""Plots a run's training loss and validation metric: python experiments/plot_run.py RUN OUT.png"""

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from flatjax import jsonl  # noqa: E402
from flatjax.train.runs import recorded  # noqa: E402


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("run", type=Path, nargs="+", help="run folder(s) with metrics.jsonl")
  parser.add_argument("--out", type=Path, required=True, help="PNG to write")
  args = parser.parse_args()
  fig, (ax_loss, ax_eval) = plt.subplots(1, 2, figsize=(10, 3.8))
  configs = [recorded(json.loads((run / "config.json").read_text())["config"]) for run in args.run]
  several_seeds = len({cfg["seed"] for cfg in configs}) > 1
  for run, cfg in zip(args.run, configs):
    rows = jsonl.read(run / "metrics.jsonl", missing_ok=False)
    train = [r for r in rows if r["kind"] == "train"]
    evals = [r for r in rows if r["kind"] == "eval"]
    given = cfg.get("settings", cfg.get("optimizer_args", {}))
    settings = "".join(f" {k}={v:g}" for k, v in sorted(given.items()))
    label = f"{cfg['optimizer']}{settings} lr={cfg['lr']:g}"
    if several_seeds:
      label += f" seed {cfg['seed']}"
    ax_loss.plot([r["step"] for r in train], [r["loss"] for r in train], label=label)
    keys = [k for k in (evals[0] if evals else {}) if "/" in k]
    for k in keys:
      ax_eval.plot([r["step"] for r in evals], [r[k] for r in evals], "o-",
                   label=f"{label} {k}")
  ax_loss.set(xlabel="step", ylabel="training loss (mean over log interval)")
  ax_eval.set(xlabel="step", ylabel="validation metric (%)")
  for ax in (ax_loss, ax_eval):
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
  fig.tight_layout()
  args.out.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(args.out, dpi=120)


if __name__ == "__main__":
  main()
