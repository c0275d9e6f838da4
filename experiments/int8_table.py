"""The markdown summary of int8_glue.sh: ``python experiments/int8_table.py RESULTS_DIR [COMMAND]``.

RESULTS_DIR holds one folder per model with the ``quantize.json`` of
``flatjax quantize`` and the ``torch.json`` of ``experiments/int8_vs_torch.py``.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

# The paper's Table 8 (bert-base, mean of 3 seeds): float32 -> int8 dev accuracy.
PAPER = {("sst2", "adam"): (92.70, 91.17), ("sst2", "sam"): (93.08, 92.39),
         ("rte", "adam"): (67.63, 56.80), ("rte", "sam"): (67.87, 65.70)}


def main(folder: str, command: str | None = None) -> None:
  rows = []
  for d in sorted(Path(folder).iterdir()):
    if not (d / "quantize.json").is_file():
      continue
    q = json.loads((d / "quantize.json").read_text())
    t = json.loads((d / "torch.json").read_text())
    metric = next(iter(q["float32"]["validation"]))
    dyn, pc = q["int8"]["dynamic"], q["int8"].get("dynamic-per-channel")
    rows.append({
        "name": d.name, "task": q["task"], "optimizer": q["optimizer"], "metric": metric,
        "examples": q["eval"]["splits"]["validation"],
        "fp32": q["float32"]["validation"][metric],
        "int8": dyn["metrics"]["validation"][metric],
        "int8_pc": pc["metrics"]["validation"][metric] if pc else None,
        "kept": dyn["vs_float32"]["validation"]["logits"]["argmax_agreement"],
        "torch_agree": t["label_agreement"], "torch_diff": t["labels_differing"],
        "torch_int8": t["torch_int8_accuracy"], "sizes": dyn["sizes"]})
  print("# Int8 post-training quantization: fp32 -> int8 dev metric\n")
  if command:
    print(f"Made by `{command}`.\n")
  print("`int8` is PyTorch's recipe (`quantize_dynamic` on every Linear: per-tensor weights, "
        "dynamic per-tensor uint8 activations), `per-channel` the same with one weight scale "
        "per output feature. `labels kept` is the share of dev predictions the int8 model "
        "keeps from the float32 one; `vs PyTorch int8` compares flatjax's int8 model with "
        "PyTorch's `quantize_dynamic` of the same weights on the same batches.\n")
  print("| model | dev examples | fp32 | int8 | change | per-channel int8 | labels kept | "
        "vs PyTorch int8: labels agree | PyTorch int8 |")
  print("|---|---|---|---|---|---|---|---|---|")
  for r in rows:
    pc = "" if r["int8_pc"] is None else f"{r['int8_pc']:.2f}"
    print(f"| {r['name']} | {r['examples']} | {r['fp32']:.2f} | {r['int8']:.2f} | "
          f"{r['int8'] - r['fp32']:+.2f} | {pc} | {r['kept']:.1%} | "
          f"{r['torch_agree']:.2%} ({r['torch_diff']} differ) | {r['torch_int8']:.2f} |")
  groups = defaultdict(list)
  for r in rows:
    groups[(r["task"], r["optimizer"])].append(r)
  print("\nMean over seeds, against the paper's Table 8 (bert-base, full data, 3 seeds):\n")
  print("| task | optimizer | runs | fp32 -> int8 (change) | paper fp32 -> int8 (change) |")
  print("|---|---|---|---|---|")
  for (task, opt), rs in sorted(groups.items()):
    f = sum(r["fp32"] for r in rs) / len(rs)
    q = sum(r["int8"] for r in rs) / len(rs)
    paper = PAPER.get((task, opt))
    ref = f"{paper[0]:.2f} -> {paper[1]:.2f} ({paper[1] - paper[0]:+.2f})" if paper else ""
    print(f"| {task} | {opt} | {len(rs)} | {f:.2f} -> {q:.2f} ({q - f:+.2f}) | {ref} |")
  if rows:
    s = rows[0]["sizes"]
    print(f"\nFile size (MiniLM): int8 {s['int8_bytes'] / 2**20:.1f} MiB against float32 "
          f"{s['fp32_bytes'] / 2**20:.1f} MiB ({s['ratio']:.1%}). Embeddings, biases and "
          "LayerNorms stay float32, as in PyTorch's recipe; MiniLM's word embeddings "
          "(30,522 x 384) are half its weights, so the file shrinks less than bert-base's "
          "(the paper: 2.5x).")


if __name__ == "__main__":
  main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None)
