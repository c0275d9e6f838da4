"""``python -m experiments.run ITEM``: one paper item's runs, tasks x seeds, and its results.

``ITEM`` names ``experiments/configs/ITEM.yaml``: the item's tasks, seeds and steps (each a
``flatjax`` command line, or one of the experiment scripts in :data:`SCRIPTS`, with
``{task}``, ``{seed}``, ``{data}`` and ``{run}`` filled in); ``task_steps`` (optional) maps a
task to the steps it runs instead (a transfer onto the other task reads that task's masks).
Every task and seed runs into ``runs/ITEM/TASK-seedSEED`` (``--runs``); a step whose folder
holds a run is continued with ``--resume``, so an interrupted campaign picks up where it
stopped and a finished one redoes nothing. The finished runs become rows
(:mod:`experiments.collect`), each naming the revision that made it, written with a summary
and a plot (:mod:`experiments.summary`) to ``runs/ITEM/``; ``--record`` writes them into
``experiments/results/ITEM/`` instead, replacing the rows of the same task, seed and setting, and
``--check`` says whether they equal the committed rows. Once a step has finished, the
resume checkpoints (``checkpoints/``, the whole train state twice) of its finished training
runs are deleted, unless ``--keep-checkpoints``: their models stay in ``best/`` and
``final/``, and an item's checkpoints would otherwise fill tens of GB.

  python -m experiments.run compare                       # every task and seed
  python -m experiments.run compare --tasks sst2 --seeds 0 --check
  python -m experiments.run compare --scale full --data-root /data/glue   # the paper's scale
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from experiments import collect, summary
from flatjax.data.tasks import get_task

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "experiments" / "configs"
RESULTS = ROOT / "experiments" / "results"
#: Each task's folder under the data root (../shared/data's layout: GLUE TSVs, hub-schema
#: subsets, SQuAD JSON).
TASK_DATA = {"rte": "glue/RTE", "mrpc": "glue/MRPC", "sst2": "glue/SST-2", "cola": "glue/CoLA",
             "stsb": "glue/STS-B", "qnli": "glue_subsets/qnli", "mnli": "glue_subsets/mnli",
             "qqp": "glue_subsets/qqp", "squad": "squad"}
#: The file that marks a started run in a step's output folder (or in a folder per
#: optimizer under it, as ``flatjax imp`` writes), by command.
STARTED = {"compare": "compare.json", "train": "config.json", "imp": "imp.json",
           "tickets": "tickets.json", "cofi": "cofi.json"}
#: The file a finished run has, by command: such a step is not run again (a resume that
#: redoes nothing would still be recorded in its run.json, and quantize, sharpness and
#: oneshot measure again).
FINISHED = {"compare": "results.json", "imp": "ticket.json", "train": "results.json",
            "cofi": "results.json", "quantize": "quantize.json", "sharpness": "sharpness.json",
            "oneshot": "oneshot.md", "tickets": "tickets.md", "int8-vs-torch": "torch.json"}
#: Steps that are experiment scripts, not flatjax commands (they need the test extras), by
#: the name a config's step starts with: the module ``python -m`` runs.
SCRIPTS = {"int8-vs-torch": "experiments.int8_vs_torch"}


#: What every item's config says; one the runner runs also has ``steps`` and ``collect``.
REQUIRED = ("title", "claim", "tasks", "seeds", "scale")


class ExperimentError(Exception):
  """Bad input to the runner: printed as one line, exit 2."""


def load_config(item: str, scale: str = "cpu") -> dict:
  """The item's configuration (``item``: a name in experiments/configs, or a YAML file);
  ``scale="full"`` overlays its ``full`` section."""
  path = Path(item) if item.endswith((".yaml", ".yml")) else CONFIGS / f"{item}.yaml"
  item = path.stem
  if not path.is_file():
    known = ", ".join(sorted(p.stem for p in CONFIGS.glob("*.yaml")))
    raise ExperimentError(f"no experiment {item!r}; known: {known}")
  try:
    config = yaml.safe_load(path.read_text())
  except yaml.YAMLError as e:
    raise ExperimentError(f"{path}: not YAML ({str(e).splitlines()[0]})") from None
  keys = REQUIRED + (() if "made_by" in (config or {}) else ("steps", "collect"))
  missing = [k for k in keys if not isinstance(config, dict) or k not in config]
  if missing:
    raise ExperimentError(f"{path}: no {', '.join(missing)}")
  for key in ("task_steps", "task_scale"):
    stray = sorted(set(config.get(key) or {}) - set(config["tasks"]))
    if stray:
      raise ExperimentError(f"{path}: {key} for {', '.join(stray)}, not among its tasks")
  if scale != "cpu":
    if scale not in config:
      raise ExperimentError(f"{item} has no {scale!r} scale")
    config = {**config, **config[scale]}
  config.update(item=item, scale_name=scale)
  return config


def data_folder(root: Path | None, task: str) -> Path | None:
  """``task``'s folder under ``root``; None (the Hugging Face hub) without a root."""
  if root is None:
    return None
  if task not in TASK_DATA:
    raise ExperimentError(f"no data folder known for task {task!r}")
  folder = root / TASK_DATA[task]
  if not (ROOT / folder).is_dir():
    raise ExperimentError(f"no data for {task} at {folder}; pass --data-root")
  return folder


def step_argv(step: list, task: str, seed: int, data: Path | None, run: Path) -> list[str]:
  """A step's command line with its fields filled, ``--resume`` added for a started run;
  without ``data``, ``--data {data}`` is left out (the command reads the hub).

  Fields: ``{task}``, ``{seed}``, ``{data}`` (the task's data folder), ``{run}`` (this task
  and seed's folder, ``runs/ITEM/TASK-seedSEED``), ``{runs}`` (the folder holding every
  item's runs, to read another item's: ``{runs}/compare/{task}-seed{seed}``) and
  ``{sparsity}`` (the task's reference sparsity); the element ``{cpu_subset}`` becomes the
  task's CPU-scale data flags (:func:`cpu_subset`)."""
  if data is None:
    drop = {i for i, a in enumerate(step) if a == "{data}"}
    step = [a for i, a in enumerate(step) if i not in drop and i + 1 not in drop]
  step = [flag for a in step for flag in (cpu_subset(task) if a == "{cpu_subset}" else [a])]
  fields = {"task": task, "seed": seed, "data": data, "run": run, "runs": run.parent.parent,
            "sparsity": get_task(task).reference_sparsity}
  argv = [str(a).format(**fields) for a in step]
  if _has(argv, STARTED, every=False) and "--resume" not in argv:
    argv.append("--resume")
  return argv


def _has(argv: list[str], markers: dict, every: bool) -> bool:
  """Whether the step's output folder holds its command's marker; ``flatjax imp`` keeps a
  folder per optimizer, which must all hold it (``every``) or any."""
  marker = markers.get(argv[0])
  output = argv[argv.index("--output") + 1] if "--output" in argv else None
  if not (marker and output):
    return False
  folder = ROOT / output
  if argv[0] != "imp" or not folder.is_dir():
    return (folder / marker).is_file()
  hits = [(d / marker).is_file() for d in folder.iterdir() if d.is_dir()]
  return bool(hits) and (all(hits) if every else any(hits))


def finished(argv: list[str]) -> bool:
  return _has(argv, FINISHED, every=True)


def drop_resume_state(folder: Path) -> int:
  """Deletes the ``checkpoints/`` of every finished training run under ``folder`` (one
  beside its ``results.json``); an unfinished run keeps them to resume. Returns the bytes
  freed."""
  freed = 0
  for checkpoints in sorted(Path(folder).rglob("checkpoints")):
    if checkpoints.is_dir() and (checkpoints.parent / FINISHED["train"]).is_file():
      freed += sum(f.stat().st_size for f in checkpoints.rglob("*") if f.is_file())
      shutil.rmtree(checkpoints)
  return freed


def cpu_subset(task: str) -> list[str]:
  """compare's cpu preset sizes for ``task`` (``CPU_SUBSETS``) as a fine-tuning command's
  flags: the one declaration of the CPU scale serves every item."""
  from flatjax.recipes import compare
  return [f"--{key[len('train.'):]}={value}" for key, value in compare.preset("cpu", task).items()
          if key.startswith("train.data.")]


def steps_for(config: dict, task: str) -> list:
  """``task``'s steps: its own in ``task_steps``, else the item's ``steps``."""
  return (config.get("task_steps") or {}).get(task, config["steps"])


def run_item(config: dict, tasks: list[str], seeds: list[int], runs: Path,
             data_root: Path, keep_checkpoints: bool = False) -> list[Path]:
  """Runs every step for each task and seed; returns the run folders, in order."""
  folders = []
  for task in tasks:
    data = data_folder(data_root, task)
    for seed in seeds:
      run = runs / f"{task}-seed{seed}"
      for step in steps_for(config, task):
        argv = step_argv(step, task, seed, data, run)
        command = ([SCRIPTS[argv[0]], *argv[1:]] if argv[0] in SCRIPTS else ["flatjax", *argv])
        print(f"== {config['item']} {task} seed {seed}: {' '.join(command)}", flush=True)
        if finished(argv):
          print("finished earlier", flush=True)
        else:
          done = subprocess.run([sys.executable, "-m", *command], cwd=ROOT)
          if done.returncode != 0:
            raise SystemExit(done.returncode)
        # A step finished before (by an earlier runner, or with --keep-checkpoints) is
        # cleaned too.
        if not keep_checkpoints and "--output" in argv:
          freed = drop_resume_state(ROOT / argv[argv.index("--output") + 1])
          if freed:
            print(f"deleted the finished runs' resume checkpoints ({freed / 2**20:.0f} MiB)",
                  flush=True)
      folders.append(run)
  return folders


#: Prefixes of the compressions whose scores round to int8 (every int8 scheme, PyTorch's
#: int8-torch too): the last bits of the float code around the rounding, which differ
#: between CPU instruction sets, can change them.
ROUNDED = ("int8",)


def check(rows: list[dict], committed: list[dict]) -> tuple[list[str], list[str]]:
  """``(problems, notes)``: differences between fresh rows and the committed ones with the
  same key (a committed row without predictions is compared by score only). An int8 row
  (any scheme) that differs from one made on another machine (or an unrecorded one) is a
  note, not a problem: int8 is reproducible on the same CPU instruction set only."""
  known = {collect.row_key(r): r for r in committed}
  problems, notes = [], []
  for row in rows:
    old = known.get(collect.row_key(row))
    where = " ".join(f"{k}={v}" for k, v in zip(collect.KEY, collect.row_key(row)))
    if old is None:
      problems.append(f"{where}: no committed row")
      continue
    if abs(old["score"] - row["score"]) > 1e-9:
      found = f"{where}: score {row['score']:.4f}, committed {old['score']:.4f}"
    elif old.get("predictions") not in (None, row.get("predictions")):
      found = f"{where}: same score, other predictions"
    else:
      continue
    elsewhere = old.get("machine") is None or old.get("machine") != row.get("machine")
    if row["compression"].startswith(ROUNDED) and elsewhere:
      notes.append(f"{found} (committed from {old.get('machine') or 'an unrecorded machine'}, "
                   f"this is {row.get('machine') or 'unrecorded'})")
    else:
      problems.append(found)
  return problems, notes


def parse(argv: list[str] | None = None) -> argparse.Namespace:
  p = argparse.ArgumentParser(prog="python -m experiments.run", description=__doc__.split("\n")[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("item", help="an experiments/configs/ITEM.yaml")
  p.add_argument("--tasks", nargs="+", help="a subset of the item's tasks")
  p.add_argument("--seeds", nargs="+", type=int, help="a subset of the item's seeds")
  p.add_argument("--scale", default="cpu", help="cpu, or full: the config's paper-scale section")
  p.add_argument("--data-root", type=Path,
                 help="the tasks' data folders (default ../shared/data where it exists, "
                      "else the Hugging Face hub)")
  p.add_argument("--runs", type=Path, help="where the runs go (default runs/ITEM)")
  p.add_argument("--results", type=Path, default=RESULTS,
                 help="the committed results (default experiments/results)")
  p.add_argument("--record", action="store_true",
                 help="write the rows, summary and plot into experiments/results/ITEM")
  p.add_argument("--keep-checkpoints", action="store_true",
                 help="keep finished runs' resume checkpoints (default: deleted after each "
                      "step; the models stay in best/ and final/)")
  p.add_argument("--check", action="store_true",
                 help="compare the rows with experiments/results/ITEM's; exit 1 if they differ")
  return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
  args = parse(argv)
  try:
    config = load_config(args.item, args.scale)
    item = config["item"]
    if "steps" not in config:
      raise ExperimentError(f"{item} is not made by this runner: {config.get('made_by')}")
    tasks = args.tasks or config["tasks"]
    seeds = args.seeds if args.seeds is not None else config["seeds"]
    # Defaults relative to the checkout (the commands run there), so run.json records
    # paths that mean the same on another machine.
    runs = (args.runs.resolve() if args.runs
            else Path("runs") / (item if args.scale == "cpu" else f"{item}-{args.scale}"))
    shared = Path("..") / "shared" / "data"
    data_root = (args.data_root.resolve() if args.data_root
                 else shared if (ROOT / shared).is_dir() else None)
    folders = run_item(config, tasks, seeds, runs, data_root, args.keep_checkpoints)
  except ExperimentError as e:
    print(f"experiments.run: {e}", file=sys.stderr)
    return 2
  rows = [row for f in folders for row in collect.collect(config, ROOT / f)]
  committed_dir = args.results / item
  committed = collect.read_rows(committed_dir / collect.ROWS_FILE)
  out = committed_dir if args.record else ROOT / runs
  written = summary.write(config, collect.merge(committed if args.record else [], rows), out)
  print(summary.table(config, rows))
  print(f"rows, summary and plot: {written}")
  if args.check:
    problems, notes = check(rows, committed)
    for p in problems:
      print(f"differs: {p}")
    for n in notes:
      print(f"differs on another machine: {n}")
    print(f"{len(rows) - len(problems) - len(notes)} of {len(rows)} rows equal the committed "
          f"{committed_dir}" + (f"; {len(notes)} int8 rows differ as another CPU instruction "
                                f"set can make them" if notes else ""))
    return 1 if problems else 0
  return 0


if __name__ == "__main__":
  sys.exit(main())
