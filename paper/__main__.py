"""``python -m paper``: the report on experiments/results (its README.md).

Every item's rows (``experiments/results/ITEM/results.jsonl``) are read, never prose: the
claims each item's config lists are judged by :mod:`paper.claims` (paired bootstrap
intervals over dev examples and seeds), and each item is listed with its scale, the
revisions that made its rows and its own generated summary.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from paper import claims, costs

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "experiments" / "configs"
SAM_OVERHEAD = ROOT / "benchmarks" / "results" / "sam_overhead_cpu.jsonl"

INTRO = [
    "# Train flat, then compress: the paper's claims, measured",
    "",
    "Written by `python -m paper` from the rows in the folders below (each row names the "
    "revision of flatjax that made it). The paper's numbers are bert-base-uncased on the full "
    "GLUE/SQuAD training sets, 3 seeds. flatjax's are **MiniLM-L6 (22.7M parameters)**, "
    "trained on small subsets on a 2-core CPU except where an item says otherwise (`h200`: "
    "full training sets on one GPU): a claim that does not hold here is a measurement at this "
    "scale, not a refutation of the paper.",
    "",
    "Each claim compares a reference model with a candidate (Adam's with SAM's, unless it says "
    "otherwise): their drops under a compression (points, means over seeds; positive = lost), "
    "or where their compressed models end. The interval is the 95% paired bootstrap interval "
    "of the difference in the claim's favour, resampling dev examples with every model and "
    "seed at the same examples (`paper/stats.py`, `scipy.stats.bootstrap`). **held**: the "
    "interval lies above zero; **reversed**: below; **undecided**: it holds zero. "
    "*detectable*: the smallest difference the run would detect (80% power, 2.8 bootstrap "
    "standard errors). Rows made before flatjax kept dev predictions (`revision_from: "
    "commit` in the rows) give means but **no interval** until their item is run again.",
    "",
]


def items() -> list[str]:
  return sorted(p.stem for p in CONFIGS.glob("*.yaml"))


def config(item: str) -> dict:
  return yaml.safe_load((CONFIGS / f"{item}.yaml").read_text())


def claims_section(results: Path) -> list[str]:
  found = [c for item in items()
           for c in claims.claims(item, claims.read_rows(results, item),
                                  config(item).get("claims", [["adam", "sam"]]))]
  counts = {v: sum(c.verdict == v for c in found)
            for v in ("held", "reversed", "undecided", "no interval")}
  decided = [c for c in found if c.verdict in ("held", "reversed")]
  chance = sum(c.at_chance for c in decided)
  summary = ", ".join(f"{n} {v}" for v, n in counts.items()) + f" of {len(found)} claims."
  if chance:
    summary += (f" In {chance} of the {len(decided)} held or reversed, a model scores within "
                "2 SE of the majority label (the table names it): its drop says little.")
  return (["## Claims", "", summary, ""]
          + claims.markdown(found) + [""])


def items_section(results: Path) -> list[str]:
  lines = ["## Items", "",
           "| item | what | scale | rows | with dev predictions | revisions |",
           "|---|---|---|---|---|---|"]
  for item in items():
    rows = claims.read_rows(results, item)
    if not rows:
      continue
    c = config(item)
    revisions = sorted({r["revision"] for r in rows})
    with_predictions = sum(r.get("predictions") is not None for r in rows)
    lines.append(f"| [{item}]({item}/README.md) | {c['title']} | {c['scale']} | {len(rows)} "
                 f"| {with_predictions} | {', '.join(revisions)} |")
  return lines + ["", "Each item's folder holds its rows, a generated summary with the "
                  "command that makes them (`python -m experiments.run ITEM`) and its plot.", ""]


def costs_section(results: Path, benchmark_file: Path) -> list[str]:
  benchmark = costs.last_benchmark(benchmark_file)
  rows = claims.read_rows(results, costs.ITEM)
  found = (costs.table(rows, benchmark, config(costs.ITEM).get("claims", []))
           if benchmark and rows else [])
  if not found:
    return []
  where = f"{benchmark_file.parent.parent.name}/{benchmark_file.parent.name}/{benchmark_file.name}"
  return (["## What each SAM variant costs and buys", "",
           f"Step cost: `benchmarks/sam_overhead.py`, MiniLM at batch 32 × 128 on "
           f"{benchmark.get('cpu_cores', '?')} CPU cores ({benchmark.get('time', '?')[:10]}, "
           f"the last row of `{where}`; late-phase SAM over a run, 80% Adam steps). "
           f"Drops (points, positive = lost, means over seeds) and intervals: the "
           f"[{costs.ITEM}]({costs.ITEM}/README.md) item's, one-shot at the task's reference "
           f"sparsity.", ""] + found + [""])


def build(results: Path, benchmark_file: Path = SAM_OVERHEAD) -> str:
  return "\n".join(INTRO + claims_section(results) + costs_section(results, benchmark_file)
                   + items_section(results))


def main(argv: list[str] | None = None) -> int:
  p = argparse.ArgumentParser(prog="python -m paper", description=__doc__.split("\n")[0])
  p.add_argument("--results", type=Path, default=ROOT / "experiments" / "results")
  p.add_argument("--output", type=Path, help="default: RESULTS/README.md")
  args = p.parse_args(argv)
  if not args.results.is_dir():
    print(f"python -m paper: results folder {args.results} does not exist", file=sys.stderr)
    return 2
  output = args.output or args.results / "README.md"
  output.write_text(build(args.results))
  print(f"wrote {output}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
