"""paper.legacy.accelerator on hand-built campaign rows with known drops."""

import json

import pytest

from paper.legacy import verdicts as V
from paper.legacy.accelerator import accelerator_section

LABELS = "1" * 60 + "0" * 40   # majority 60%, margin 200 sqrt(0.24 / 100) = 9.80 points


def preds(correct: int) -> str:
  """Predictions right on the last ``correct`` of the 100 examples (wrong on the first)."""
  wrong = 100 - correct
  return "".join(str(1 - int(y)) for y in LABELS[:wrong]) + LABELS[wrong:]


def finetune(opt, rho, seed, dense, int8, oneshot):
  name = "adam" if opt == "adam" else f"sam{rho:g}"
  return {"unit": f"b/rte/lr2e-05/{name}/seed{seed}", "kind": "finetune", "part": "B",
          "task": "rte", "optimizer": opt, "rho": rho, "lr": 2e-5, "seed": seed,
          "dev": {"accuracy": float(dense)}, "int8": {"accuracy": float(int8)},
          "oneshot": [{"target": 0.0, "sparsity": 0.0, "dev": {"accuracy": float(dense)}},
                      {"target": 0.6, "sparsity": 0.6, "dev": {"accuracy": float(oneshot)}}],
          "preds": {"dense": preds(dense), "int8": preds(int8), "oneshot0.6": preds(oneshot)},
          "revision": "abc1234", "scale": "H200, full training set"}


def imp(source, opt, seed, score):
  return {"unit": source.replace("/lr", "/imp2/lr"), "kind": "imp", "part": "B",
          "task": "rte", "optimizer": opt, "seed": seed, "source": source,
          "dev": {"accuracy": float(score)}, "preds": {"imp": preds(score)},
          "revision": "abc1234", "scale": "H200, full training set"}


@pytest.fixture
def section(tmp_path):
  sam_seed0 = finetune("sam", 0.02, 0, 90, 88, 85)
  adam_seed0 = finetune("adam", None, 0, 90, 80, 70)
  rows = [
      {"unit": "b/rte/data", "kind": "data", "part": "B", "task": "rte",
       "train_examples": 2490, "dev_examples": 100, "labels": LABELS,
       "main_metric": "accuracy", "majority": 60.0, "margin": 9.8},
      # the learning-rate sweep's other run: never compared
      dict(finetune("adam", None, 0, 95, 60, 60), lr=1e-4, unit="b/rte/lr0.0001/adam/seed0"),
      adam_seed0,
      finetune("sam", 0.05, 0, 60, 60, 60),   # at the majority label: rho 0.02 is compared
      sam_seed0,
      finetune("adam", None, 1, 90, 86, 80),
      finetune("sam", 0.05, 1, 90, 88, 75),
      imp(adam_seed0["unit"], "adam", 0, 80),
      imp(sam_seed0["unit"], "sam", 0, 84),
  ]
  folder = tmp_path / "h200_full"
  folder.mkdir()
  (folder / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
  return accelerator_section(tmp_path)


def test_int8_gap_is_the_mean_of_the_seeds_gaps(section):
  f = next(f for f in section.findings if f.claim.startswith("int8"))
  # seed 0: Adam 90 -> 80, SAM (rho 0.02) 90 -> 88: gap 8; seed 1: 90 -> 86 vs 90 -> 88: 2.
  assert f.verdict == V.HELD
  assert "SAM loses less by +5.00" in f.flatjax and "seeds 0, 1" in f.flatjax
  assert f.paper == "accuracy: Adam -10.83, SAM -2.17"  # Table 8, RTE


def test_one_shot_goes_the_other_way_on_seed_1(section):
  f = next(f for f in section.findings if f.claim.startswith("one-shot"))
  # seed 0: Adam -20, SAM -5 (gap +15); seed 1: Adam -10, SAM -15 (gap -5): mean +5.
  assert f.verdict == V.MIXED
  assert "+5.00" in f.flatjax


def test_imp_is_paired_with_the_compared_models(section):
  f = next(f for f in section.findings if f.claim.startswith("IMP"))
  # seed 0 only: Adam 90 -> 80, SAM 90 -> 84: gap +4 (4 examples of 100 at +100 each).
  assert f.verdict == V.HELD and "SAM loses less by +4.00 [+1" in f.flatjax
  assert f.paper == "Adam -3.9, SAM +4.8"  # Table 5, RTE at 60%


def test_table_names_the_radius_compared(section):
  rows = section.table[1:]
  assert ["RTE", "0", "sam ρ 0.02", "2e-05", "90.00", "-2.00", "-5.00", "-6.00"] in rows
  assert len(rows) == 4 and "revision abc1234" in section.scale


def test_without_results_the_section_says_not_run(tmp_path):
  assert accelerator_section(tmp_path).empty
