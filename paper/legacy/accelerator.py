"""The report's section on the runs made on an accelerator with full training sets.

``benchmarks/campaign`` (Part B) writes one JSON row per fine-tuning and per IMP run
into ``h200_full/results.jsonl``: dev scores, and the dev predictions of the dense model
and of each compression of it, so the gap between Adam's and SAM's drops gets a bootstrap
interval over the dev examples (:mod:`paper.legacy.bootstrap`). A seed counts when both
dense models clear the majority label by two standard errors and at least one compressed
model does (:func:`paper.legacy.verdicts.seed_testable`); where SAM at rho 0.05 does not,
the campaign also ran rho 0.02 and that model is compared.
"""

from __future__ import annotations

from pathlib import Path

from flatjax import jsonl
from paper.legacy import bootstrap as B
from paper import numbers as paper
from paper.legacy import verdicts as V
from paper.legacy.sections import Finding, Section

FOLDER = "h200_full"
#: Compressions compared: (the rows' predictions key, the claim).
COMPRESSIONS = (("int8", "int8: SAM loses less (Table 8)"),
                ("oneshot0.6", "one-shot 60%: SAM loses less (Sec. 4)"),
                ("imp", "IMP with rewinding: SAM loses less (Tables 1/5)"))


def chance_level(info: dict) -> V.ChanceLevel:
  """The task's majority label and margin, as its ``data`` row records them."""
  return V.ChanceLevel(info["majority"], info["margin"])


def by_seed(rows: list[dict], task: str, info: dict) -> dict[int, dict[str, dict]]:
  """Per seed: the ``adam`` row, the ``sam`` row compared (the first radius whose model
  clears chance, else the last tried), and the IMP rows under ``imp-adam``/``imp-sam``."""
  level = chance_level(info)
  out: dict[int, dict[str, dict]] = {}
  fine = [r for r in rows if r.get("kind") == "finetune" and r["task"] == task]
  lr = {r["lr"] for r in fine if r["optimizer"] == "sam"}  # SAM runs at the chosen lr only
  for r in sorted(fine, key=lambda r: (r["seed"], -(r["rho"] or 0))):
    if lr and r["lr"] not in lr:
      continue  # the learning-rate sweep's other runs
    seed = out.setdefault(r["seed"], {})
    if r["optimizer"] == "adam":
      seed["adam"] = r
    elif "sam" not in seed or not V.above_chance([_score(seed["sam"], info)], level):
      seed["sam"] = r
  for r in rows:
    if r.get("kind") == "imp" and r["task"] == task and r["seed"] in out:
      chosen = out[r["seed"]].get(r["optimizer"])
      if chosen is not None and r["source"] == chosen["unit"]:
        out[r["seed"]][f"imp-{r['optimizer']}"] = r
  return out


def _score(row: dict, info: dict) -> float:
  return row["dev"][info["main_metric"]]


def _compressed(pair: dict[str, dict], key: str, opt: str) -> dict | None:
  row = pair.get(f"imp-{opt}") if key == "imp" else pair.get(opt)
  return row if row is not None and key in row.get("preds", {}) else None


def _finding(task: str, info: dict, seeds: dict, key: str, claim: str) -> Finding | None:
  level = chance_level(info)
  gaps, drops, testable, used = [], {"adam": [], "sam": []}, [], []
  for seed, pair in sorted(seeds.items()):
    after = {o: _compressed(pair, key, o) for o in ("adam", "sam")}
    if "adam" not in pair or "sam" not in pair or None in after.values():
      continue
    labels = info["labels"]
    c = {o: (B.correct(pair[o]["preds"]["dense"], labels),
             B.correct(after[o]["preds"][key], labels)) for o in ("adam", "sam")}
    before_s = [100 * c[o][0].mean() for o in ("adam", "sam")]
    after_s = [100 * c[o][1].mean() for o in ("adam", "sam")]
    ok = V.seed_testable(before_s, after_s, level)
    gap = B.drop_gap(*c["adam"], *c["sam"])[0]
    testable.append(ok)
    gaps.append(float(gap.mean()))
    if ok:
      used.append(gap)
      for o, b, a in zip(("adam", "sam"), before_s, after_s):
        drops[o].append(a - b)
  if not gaps:
    return None
  counted = [s for s, ok in zip(sorted(seeds), testable) if ok]
  text = (f"Adam {V.fmt_seeds(drops['adam'])}, SAM {V.fmt_seeds(drops['sam'])}; "
          f"SAM loses less by {B.fmt(B.interval(used))} (95% bootstrap over dev examples; "
          f"seeds {', '.join(map(str, counted))})" if used else
          f"no seed testable of {len(gaps)}: both dense models above chance and a "
          f"compressed one too")
  setting = f"{paper.TASK_NAMES[task]}, full training set ({info['main_metric']})"
  return Finding(claim, setting, _paper(task, key),
                 text, V.verdict_by_seed(gaps, testable))


def _paper(task: str, key: str) -> str:
  if key == "int8" and task in paper.TABLE8:
    metric, (a0, a1), (s0, s1) = paper.TABLE8[task]
    return f"{metric}: Adam {a1 - a0:+.2f}, SAM {s1 - s0:+.2f}"
  if key == "imp" and task in paper.TABLE5["imp"]["adam"]:
    return (f"Adam {paper.TABLE5['imp']['adam'][task] - paper.TABLE5['full']['adam'][task]:+.1f}"
            f", SAM {paper.TABLE5['imp']['sam'][task] - paper.TABLE5['full']['sam'][task]:+.1f}")
  return "SAM's curve above Adam's (figure)"


def _table_rows(task: str, info: dict, seeds: dict) -> list[list[str]]:
  rows = []
  for seed, pair in sorted(seeds.items()):
    for opt in ("adam", "sam"):
      r = pair.get(opt)
      if r is None:
        continue
      dense, main = _score(r, info), info["main_metric"]
      shot = next((p["dev"][main] for p in r["oneshot"] if abs(p["target"] - 0.6) < 1e-6),
                  None)
      imp = pair.get(f"imp-{opt}")
      name = opt if opt == "adam" else f"sam ρ {r['rho']:g}"
      rows.append([paper.TASK_NAMES[task], str(seed), name, f"{r['lr']:g}", V.fmt(dense),
                   V.fmt_signed(r["int8"][main] - dense),
                   V.fmt_signed(shot - dense if shot is not None else None),
                   V.fmt_signed(imp["dev"][main] - dense) if imp else "–"])
  return rows


def accelerator_section(results: Path) -> Section:
  path = results / FOLDER / "results.jsonl"
  section = Section(
      "h200", "Full training sets (H200)", "The claims on full training sets (one H200)",
      "SAM's models lose less to int8 quantization, one-shot and iterative magnitude pruning; "
      "here measured on the full training sets with the paper's recipe, on a GPU.",
      ["python -m benchmarks.campaign run --out .device_out  (on the GPU machine)",
       "python -m benchmarks.campaign summarize benchmarks/results/campaign_h200.jsonl"],
      [FOLDER])
  if not path.is_file():
    return section
  rows = jsonl.read(path)
  section.table = [["task", "seed", "optimizer", "lr", "dense dev", "int8 Δ",
                    "one-shot 60% Δ", "IMP Δ"]]
  trained = {r["task"] for r in rows if r.get("kind") == "finetune"}
  for info in (r for r in rows if r.get("kind") == "data" and r["task"] in trained):
    task, seeds = info["task"], by_seed(rows, info["task"], info)
    section.table += _table_rows(task, info, seeds)
    for key, claim in COMPRESSIONS:
      finding = _finding(task, info, seeds, key, claim)
      if finding is not None:
        section.findings.append(finding)
    section.notes.append(f"{paper.TASK_NAMES[task]}: {info['train_examples']:,} training "
                         f"examples, {info['dev_examples']} dev; majority label "
                         f"{V.fmt_chance(chance_level(info))}.")
  made = sorted({(r.get("revision", "?")[:7], r.get("scale", "?")) for r in rows
                 if r.get("kind")})
  section.scale = ("MiniLM-L6, batch 32, length 128, Adam's linear decay from the lr shown; "
                   "RTE and MRPC 10 epochs, SST-2 3; each model at its best epoch. Made by "
                   + ", ".join(f"revision {rev} ({scale})" for rev, scale in made))
  return section
