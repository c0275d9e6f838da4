"""Tables and plots from a campaign's ``results.jsonl`` (on any machine, after the run).

    python -m benchmarks.campaign summarize benchmarks/results/campaign_h200.jsonl

writes Part A's tables to ``benchmarks/results/<name>.md`` and Part B's rows, README and
one-shot plot to ``experiments/results/h200_full/``, where ``python -m paper`` reads them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from flatjax import jsonl

SPEED_ROWS = (("train step, Adam", "adam"), ("train step, SAM (rho 0.05)", "sam"),
              ("eval forward", "eval"))


def _rows(path: Path) -> dict[str, dict]:
  from flatjax.errors import FlatjaxInputError
  if not Path(path).is_file():
    raise FlatjaxInputError(f"results file {path} does not exist")
  rows = {}
  for row in jsonl.read(path, missing_ok=False):
    if row["unit"].endswith("/data"):
      row.setdefault("part", "B")
      row.setdefault("kind", "data")  # rows written before the campaign named their kind
    rows[row["unit"]] = row
  return rows


def _ms(rows: dict, unit: str) -> float | None:
  return rows[unit]["median_ms"] if unit in rows else None


def _cell(x: float | None, fmt: str = "{:.2f}") -> str:
  return "–" if x is None else fmt.format(x)


def _speed_table(rows: dict, dtype: str) -> list[str]:
  out = [f"| {dtype} | flatjax (ms) | PyTorch eager (ms) | flatjax / PyTorch | flatjax MFU "
         "| PyTorch MFU |", "|---|---|---|---|---|---|"]
  for label, opt in SPEED_ROWS:
    fx = f"a/eval/flatjax/{dtype}" if opt == "eval" else f"a/flatjax/{dtype}/{opt}"
    pt = f"a/eval/torch/{dtype}" if opt == "eval" else f"a/torch/{dtype}/{opt}"
    a, b = _ms(rows, fx), _ms(rows, pt)
    mfu = lambda u: _cell(rows[u]["mfu_vs_790"] * 100, "{:.1f}%") if u in rows else "–"
    out.append(f"| {label} | {_cell(a)} | {_cell(b)} | "
               f"{_cell(a / b if a and b else None)} | {mfu(fx)} | {mfu(pt)} |")
  return out


def speed_markdown(rows: dict) -> str:
  env = rows.get("env", {})
  lines = [f"# Part A on {env.get('torch_cuda') or env.get('devices')}", "",
           f"jax {env.get('jax')}, flax {env.get('flax')}, torch {env.get('torch')}, "
           f"transformers {env.get('transformers')}; revision "
           f"`{env.get('revision', '?')[:10]}`. bert-base's architecture, random weights, "
           "batch 32 x 128, dropout on; median ms per step over 5 runs of 10 steps. MFU: "
           "model FLOPs (matmuls; SAM counts two passes) per second over 790 TFLOP/s "
           f"(measured here: {_cell(rows.get('a/peak', {}).get('peak_tflops'), '{:.0f}')} "
           "TFLOP/s for an 8192^3 bf16 matmul).", ""]
  for dtype in ("bf16", "fp32"):
    lines += _speed_table(rows, dtype) + [""]
  for fw in ("flatjax", "torch"):
    adam, sam = _ms(rows, f"a/{fw}/bf16/adam"), _ms(rows, f"a/{fw}/bf16/sam")
    lines.append(f"- {fw}: SAM / Adam (bf16) = {_cell(sam / adam if adam and sam else None)}")
  for unit in ("a/flatjax/bf16/adam", "a/flatjax/bf16/sam", "a/flatjax/fp32/adam",
               "a/flatjax/fp32/sam"):
    if unit in rows:
      lines.append(f"- compile `{unit}`: trace {rows[unit]['trace_s']:.1f} s, XLA compile "
                   f"{rows[unit]['compile_s']:.1f} s")
  lines.append(f"- torch.compile (bf16 Adam): "
               + (f"{_cell(_ms(rows, 'a/torch.compile/bf16/adam'))} ms/step, first step "
                  f"{rows['a/torch.compile/bf16/adam']['first_step_s']:.0f} s"
                  if "a/torch.compile/bf16/adam" in rows else "not measured"))
  lines += ["", "| parity (float32, max abs diff vs PyTorch on the GPU) | JAX default "
            "precision | `highest` |", "|---|---|---|"]
  for unit in (u for u in rows if u.startswith("a/parity/")):
    r = rows[unit]
    cell = lambda p: (f"{max(r[p]['last_hidden_state'], r[p]['pooler_output']):.1e} "
                      f"({'within' if r[p]['within'] else 'above'} 1e-4)")
    lines.append(f"| {unit.split('/')[-1]} | {cell('default')} | {cell('highest')} |")
  return "\n".join(lines) + "\n"


def plot_oneshot(rows: list[dict], out: Path) -> Path | None:
  """Per task: every seed's one-shot curve, Adam and SAM (faint), and their means."""
  from paper.legacy.accelerator import by_seed
  from flatjax.figures import pyplot as _pyplot
  run = {r["task"] for r in rows if r.get("kind") == "finetune"}
  infos = [r for r in rows if r.get("kind") == "data" and r["task"] in run]
  if not infos:
    return None
  plt = _pyplot()
  fig, axes = plt.subplots(1, len(infos), figsize=(5 * len(infos), 3.8), squeeze=False)
  for ax, info in zip(axes[0], infos):
    seeds = by_seed(rows, info["task"], info)
    for color, opt in (("C0", "adam"), ("C3", "sam")):
      curves = [[p["dev"][info["main_metric"]] for p in s[opt]["oneshot"]]
                for s in seeds.values() if opt in s]
      if not curves:
        continue
      x = [100 * p["target"] for p in next(s[opt] for s in seeds.values() if opt in s)["oneshot"]]
      for c in curves:
        ax.plot(x, c, color=color, alpha=0.25, lw=1)
      ax.plot(x, np.mean(curves, axis=0), color=color, lw=2, label=f"{opt} (mean of {len(curves)})")
    ax.axhline(info["majority"], color="gray", ls=":", label="majority label")
    ax.set(title=f"{info['task']}: one-shot magnitude pruning", xlabel="encoder sparsity (%)",
           ylabel=f"dev {info['main_metric']}")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
  fig.tight_layout()
  out.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(out, dpi=110)
  plt.close(fig)
  return out


def write_results(rows: dict, raw: Path, folder: Path) -> Path:
  """Part B's rows, a README rendering the report's section, and the one-shot plot."""
  from paper.legacy import render
  from paper.legacy.accelerator import accelerator_section
  folder.mkdir(parents=True, exist_ok=True)
  part_b = [r for r in rows.values() if r.get("part") in ("B", "env")]
  (folder / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part_b))
  plot_oneshot(part_b, folder / "oneshot.png")
  section = accelerator_section(folder.parent)
  body = render.section_markdown(section)[2:]  # without the anchor and the report's heading
  findings = [["claim", "where", "paper (bert-base)", "flatjax (MiniLM, H200)", "verdict"]] + [
      [f.claim, f.setting, f.paper, f.flatjax, f"**{f.verdict}**"] for f in section.findings]
  body += render.table(findings) + [""]
  text = ["# The paper's claims on full training sets, on one H200", "",
          f"Made by `python -m benchmarks.campaign summarize {raw}` from the rows the GPU run "
          "wrote (`python -m benchmarks.campaign run --out .device_out` on the H200 machine; "
          "`benchmarks/README.md` says how to prepare its folder). Each row of "
          "`results.jsonl` names its revision and device.", "", *body,
          "![one-shot curves](oneshot.png)", ""]
  (folder / "README.md").write_text("\n".join(text))
  return folder


def summarize(raw: Path, speed_md: Path, results_dir: Path) -> None:
  rows = _rows(raw)
  speed_md.write_text(speed_markdown(rows))
  write_results(rows, raw, results_dir / "h200_full")
