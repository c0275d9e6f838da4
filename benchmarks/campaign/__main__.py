"""``python -m benchmarks.campaign {prepare,run}``: see the package docstring and
``benchmarks/README.md``."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def parse_args(argv=None):
  p = argparse.ArgumentParser(prog="python -m benchmarks.campaign",
                              description="flatjax on one accelerator: speed and the paper")
  sub = p.add_subparsers(dest="command", required=True)
  prep = sub.add_parser("prepare", help="write the folder the campaign reads (on a machine "
                                         "with the data)")
  prep.add_argument("--assets", type=Path, default=REPO / ".device_assets")
  prep.add_argument("--model", default="minilm", help="a BERT folder or flatjax short name")
  prep.add_argument("--glue", type=Path, default=REPO.parent / "shared" / "data" / "glue")
  prep.add_argument("--tasks", nargs="+", default=["rte", "mrpc", "sst2"],
                    choices=["rte", "mrpc", "sst2"], help="the tasks Part B runs")
  run = sub.add_parser("run", help="run the campaign (resumes from OUT/results.jsonl)")
  run.add_argument("--assets", type=Path, default=REPO / ".device_assets")
  run.add_argument("--out", type=Path, required=True, help="results.jsonl, log.txt, work files")
  run.add_argument("--smoke", action="store_true",
                   help="a tiny model and a few examples: the same code in seconds on a CPU")
  run.add_argument("--budget-s", type=float, default=480.0,
                   help="no unit is started that would end after this many seconds")
  run.add_argument("--parts", default="a,b", type=_parts, help="a, b or a,b")
  summ = sub.add_parser("summarize", help="tables and plots from a run's results.jsonl")
  summ.add_argument("results", type=Path)
  summ.add_argument("--speed-md", type=Path, default=None,
                    help="Part A's tables (default: beside RESULTS, .md)")
  summ.add_argument("--experiments", type=Path, default=REPO / "experiments" / "results")
  return p.parse_args(argv)


def _parts(text: str) -> set[str]:
  parts = set(text.split(","))
  if not parts or not parts <= {"a", "b"}:
    raise argparse.ArgumentTypeError(f"expected a, b or a,b, got {text!r}")
  return parts


def describe_device() -> str:
  import jax
  d = jax.devices()[0]
  return f"{d.platform}:{getattr(d, 'device_kind', '?')} x{jax.device_count()}"


def device_label(platform: str, kind: str) -> str:
  """The accelerator as the rows' scale names it: "H200" for "NVIDIA H200"; "cpu"."""
  return "cpu" if platform == "cpu" else kind.removeprefix("NVIDIA ").strip()


def environment() -> dict:
  import flax
  import jax
  import optax
  import torch
  import transformers
  return {"part": "env", "jax": jax.__version__, "flax": flax.__version__,
          "optax": optax.__version__, "torch": torch.__version__,
          "transformers": transformers.__version__, "devices": [str(d) for d in jax.devices()],
          "torch_cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
          "cpu_count": os.cpu_count()}


def run(args) -> int:
  # JAX takes 75% of a GPU's memory by default; PyTorch shares the device in Part A.
  os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.5")
  import jax
  from benchmarks.campaign import assets, ledger as ledger_lib, paper, speed
  if not (args.assets / "model" / "config.json").exists():
    print(f"campaign: {args.assets} has no model/; run 'prepare' first", file=sys.stderr)
    return 2
  args.out.mkdir(parents=True, exist_ok=True)
  jax.config.update("jax_compilation_cache_dir", str(args.out / "jax_cache"))
  clock = ledger_lib.Clock(args.budget_s)
  device = jax.devices()[0]
  scale = ("smoke (tiny)" if args.smoke else
           f"{device_label(device.platform, getattr(device, 'device_kind', '?'))}, "
           "full training set")
  ledger = ledger_lib.Ledger(args.out, clock, ledger_lib.stamp(
      assets.revision(args.assets, REPO), describe_device(), scale))
  ledger.run("env", environment)
  parts = args.parts
  bench = speed.Bench(speed.SMOKE if args.smoke else speed.FULL, args.out / "work")
  campaign = paper.Campaign(ledger, paper.PartB(ledger, args.assets / "model",
                                                args.assets / "glue"),
                            paper.SMOKE if args.smoke else paper.FULL)
  # The acceptance's items first: Part A's targets, then RTE and MRPC on 3 seeds.
  peak = speed.run_core(ledger, bench, args.assets / "model") if "a" in parts else None
  if "b" in parts:
    campaign.finetune_tasks(("rte", "mrpc"))
  if "a" in parts:
    speed.run_extras(ledger, bench, peak)
  if "b" in parts:
    campaign.finetune_tasks(("sst2",))
    campaign.imp_tasks(("rte", "mrpc", "sst2"))
    # SST-2 in the full run; the smoke run's RTE stands in for it.
    campaign.movement_tasks(("rte",) if args.smoke else ("sst2",))
  ledger.say(f"finished: {len(ledger.rows)} units recorded in {ledger.path}")
  return 0


def main(argv=None) -> int:
  from flatjax.errors import FlatjaxInputError
  args = parse_args(argv)
  try:
    return _command(args)
  except FlatjaxInputError as e:  # the user's input: one line, exit 2
    print(f"campaign: {e}", file=sys.stderr)
    return 2


def _command(args) -> int:
  if args.command == "prepare":
    from benchmarks.campaign import assets
    out = assets.prepare(args.assets, args.model, args.glue, tuple(args.tasks), REPO)
    print(f"prepared {out}: {assets.size_mb(out):.1f} MB")
    return 0
  if args.command == "summarize":
    from benchmarks.campaign import summary
    summary.summarize(args.results, args.speed_md or args.results.with_suffix(".md"),
                      args.experiments)
    return 0
  return run(args)


if __name__ == "__main__":
  sys.exit(main())
