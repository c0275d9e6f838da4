"""``python -m paper``: the report on experiments/results (its README.md).

First the claims of the items the runner records (:mod:`paper.claims`: paired bootstrap
intervals), then the earlier sections (:mod:`paper.legacy`) on the folders the shell scripts
wrote, until each is moved to the runner.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from paper import claims, legacy

ROOT = Path(__file__).resolve().parent.parent
#: The runner's items whose claims the report judges, in order.
ITEMS = ("compare", "compare_rho0.02")


def _pairs(item: str) -> list:
  """The claims ``experiments/configs/ITEM.yaml`` lists (``[adam, sam]`` by default)."""
  path = ROOT / "experiments" / "configs" / f"{item}.yaml"
  config = yaml.safe_load(path.read_text()) if path.is_file() else {}
  return config.get("claims", [["adam", "sam"]])


def claims_section(results: Path) -> list[str]:
  found = [c for item in ITEMS
           for c in claims.claims(item, claims.read_rows(results, item), _pairs(item))]
  if not found:
    return []
  return [
      "## Claims with bootstrap intervals", "",
      "From the rows `python -m experiments.run ITEM --record` writes. Each claim: the "
      "reference's and the candidate's drop under the compression (points, mean over seeds; "
      "or their scores, for a claim on where models end), and the 95% paired bootstrap "
      "interval of the difference in the claim's favour over dev examples (`paper/stats.py`: "
      "every model and seed resampled at the same examples). **held**: the interval lies "
      "above zero; **reversed**: below; "
      "**undecided**: it holds zero. *detectable*: the smallest difference the run would "
      "detect (80% power). Rows made before flatjax kept dev predictions give no interval "
      "until they are run again.", ""] + claims.markdown(found) + [""]


def build(results: Path) -> str:
  report = legacy.build_report(results)
  head, sep, rest = report.partition("## Scoreboard")
  return head + "\n".join(claims_section(results)) + "\n" + sep + rest


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
