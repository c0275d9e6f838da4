"""The earlier report sections: every paper claim beside flatjax's numbers, from experiments/results.

:func:`build_report` reads the folders the experiment scripts wrote (one section per
paper item, :mod:`paper.legacy.sections`), draws the plots that combine several
experiments (the transfer heatmap, the SAM variants' cost plot), and returns the
markdown of ``experiments/results/README.md``: a scoreboard of claims (the paper's
number, flatjax's number, held or not at this scale), then one section per item with
its scale, commands, table and plots, then every other results folder.
"""

from __future__ import annotations

from pathlib import Path

from flatjax.errors import FlatjaxInputError
from paper.legacy import render, sections
from paper.legacy.accelerator import accelerator_section
from paper.legacy.sections import Finding, Section
from paper.legacy.verdicts import verdict

__all__ = ["Finding", "Section", "build_report", "build_sections", "verdict", "write_report"]

# Folders read by no section: listed with their title and command under "Other results".
_SECTION_PREFIXES = ("compare_", "std_", "table6_", "transfer", "cofi_", "sharpness_",
                     "swa_sst2", "movement_sst2", "variants_sst2", "int8_glue", "chance",
                     "h200_")


def build_sections(results: Path, overhead: Path | None = None,
                   plots: bool = True) -> list[Section]:
  """Every item's section; with ``plots``, draws the combined plots into ``results``."""
  overhead = overhead or results.parent.parent / "benchmarks" / "results" / "sam_overhead_cpu.jsonl"
  transfer, heat = sections.transfer_section(results)
  if plots and render.plot_transfer(heat, results / "transfer" / "heatmap.png"):
    transfer.plots.append(("SAM ticket − Adam ticket", "transfer/heatmap.png"))
  variants, points = sections.variants_section(results, overhead)
  if plots and render.plot_variants(points, results / "variants_sst2" / "cost.png"):
    variants.plots.append(("compressibility against cost", "variants_sst2/cost.png"))
  secs = [sections.imp_section(results), sections.std_section(results),
          sections.table6_section(results), transfer, sections.oneshot_section(results),
          sections.cofi_section(results), sections.int8_section(results),
          sections.sharpness_section(results), sections.swa_section(results),
          sections.movement_section(results), variants, accelerator_section(results)]
  for s in secs:
    # The commands recorded in the results folders' READMEs win over the scripts' defaults;
    # benchmark commands (not results folders) stay.
    recorded = sections._commands(results, s.folders)
    if recorded:
      s.commands = recorded + [c for c in s.commands if c.startswith("python benchmarks/")
                               and c not in recorded]
  return secs


def _other_folders(results: Path) -> list[str]:
  lines = []
  for d in sorted(p for p in results.iterdir() if p.is_dir()):
    if d.name.startswith(_SECTION_PREFIXES):
      continue
    readme = d / "README.md"
    if readme.is_file():
      made_by = sections._made_by(readme)
      lines.append(f"- [`{d.name}/`]({d.name}/README.md): {sections.readme_title(readme)}"
                   + (f" — `{made_by}`" if made_by else ""))
    else:
      lines.append(f"- `{d.name}/` (no README)")
  return lines


def build_report(results: Path, overhead: Path | None = None) -> str:
  """The markdown of the report on the results folder ``results``."""
  results = Path(results)
  if not results.is_dir():
    raise FlatjaxInputError(f"results folder {results} does not exist")
  secs = build_sections(results, overhead)
  lines = [
      "# Train flat, then compress: the paper's claims at CPU scale",
      "",
      "Written by `python -m paper` from the folders below; every flatjax number comes from a "
      "run whose command is given with it. The paper's numbers are bert-base-uncased on the "
      "full GLUE/SQuAD training sets, 3 seeds. flatjax's are **MiniLM-L6 (22.7M parameters) "
      "trained on small subsets on a 2-core CPU**, each section stating its scale: a claim "
      "that did not hold here is a measurement at this scale, not a refutation of the paper. "
      "The full-scale configurations (`PRESET=full`, `MODEL=bert-base-uncased ...`) are in "
      "each script's header for a GPU/TPU.",
      "",
      "Verdicts: **held** = the mean difference over seeds goes the paper's way and every seed "
      "does; **mixed** = the mean does but not every seed; **did not hold** = the mean does "
      "not; **not testable** = a model compared is within two standard errors of a dev-set "
      "accuracy (`200·sqrt(p(1−p)/n)` points, at least 1; 4.5 points at 50% on 500 examples) "
      "of always predicting the most frequent label (SQuAD: within two standard errors of "
      "its F1 of always answering with the context's first k words; "
      "[`chance/`](chance/README.md)), written `chance 51.2 ± 4.5` (the mean over the seeds' "
      "dev samples; each seed is judged against its own sample's). A seed that is not "
      "testable is left out of the verdict and named in a note. Numbers in brackets after "
      "a mean are the seeds'.",
      "",
      "## Scoreboard",
      "",
  ] + render.scoreboard(secs) + [""]
  for s in secs:
    lines += render.section_markdown(s)
  others = _other_folders(results)
  if others:
    lines += ["## Other results folders", "",
              "Earlier experiments (development of each part); their READMEs hold their "
              "numbers and commands.", ""] + others + [""]
  lines += ["Regenerate with `python -m paper` (reads `experiments/results/`, writes this file).",
            ""]
  return "\n".join(lines)


def write_report(results: Path, output: Path | None = None, overhead: Path | None = None) -> Path:
  output = Path(output) if output else Path(results) / "README.md"
  output.write_text(build_report(Path(results), overhead))
  return output
