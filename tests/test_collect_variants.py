"""experiments/collect_variants.py on a hand-made variants run folder with known numbers: per
variant a ``flatjax train`` folder and its ``flatjax quantize`` results, and the one-shot
curves of every variant beside the compare run's Adam and SAM models; and the claims the
variants config asks of those rows."""

from __future__ import annotations

from experiments import collect, run as runner
from paper import claims
from test_collect_int8 import LABELS, _quantize, _train
from test_collect_swa import COMPARED, _compare, _oneshot

#: label -> (optimizer, its settings, dense -> one-shot 60% -> int8 scores, revision)
VARIANTS = {"looksam": ("looksam", {}, (50.0, 50.0, 50.0), "fffffff666"),
            "looksam-alpha0.1": ("looksam", {"alpha": 0.1}, (80.5, 76.5, 80.0), "fffffff666"),
            "asam": ("asam", {}, (79.0, 76.0, 79.5), "1111111aaa")}


def _hand_made_variants(runs):
  """runs/variants/sst2-seed0 beside runs/compare/sst2-seed0 (SAM at its default rho)."""
  compare, run = runs / "compare" / "sst2-seed0", runs / "variants" / "sst2-seed0"
  _compare(compare, "sst2", 0, 0.05, {"adam": (80.0, 79.0, "01100111"),
                                      "sam": (79.0, 78.75, "11100100")})
  curves, models = dict(COMPARED), {o: str(compare / o / "imp/round_00/best") for o in COMPARED}
  for label, (optimizer, settings, (dense, pruned, int8), revision) in VARIANTS.items():
    _train(run / label, "sst2", 0, optimizer, settings, revision=revision)
    _quantize(run / label / "int8", "sst2", dense, {"dynamic": (int8, "01100110")}, "01100100",
              optimizer=optimizer, revision=revision)
    curves[label] = [(0.0, dense, "01100100"), (0.3, dense, "01100100"), (0.6, pruned, "01000100")]
    models[label] = str(run / label / "best")
  _oneshot(run / "oneshot", "sst2", curves, models, revision="fffffff666")
  return run


def test_variants_rows_from_a_hand_made_run(tmp_path):
  rows = collect.collect({"collect": "variants", "scale": "tiny"},
                         _hand_made_variants(tmp_path))
  by = {(r["optimizer"], r.get("setting"), r["compression"], r["sparsity"]): r for r in rows}
  assert len(rows) == 5 * 4    # Adam, SAM and 3 variants: dense, a curve point, 60%, int8
  assert {(r["task"], r["seed"]) for r in rows} == {("sst2", 0)}
  assert {(r["optimizer"], r.get("setting"), r["rho"]) for r in rows} == {
      ("adam", None, None), ("sam", None, 0.05), ("looksam", None, 0.05),
      ("looksam", "alpha0.1", 0.05), ("asam", None, 0.5)}
  alpha = by[("looksam", "alpha0.1", "oneshot", 0.6)]
  assert (alpha["score"], alpha["base"], alpha["predictions"]) == (76.5, 80.5, "01000100")
  int8 = by[("looksam", "alpha0.1", "int8", None)]
  assert (int8["score"], int8["base"], int8["predictions"]) == (80.0, 80.5, "01100110")
  assert by[("asam", None, "none", 0.0)]["labels"] == LABELS
  assert by[("adam", None, "int8", None)]["score"] == 79.0
  assert {r["revision"] for r in rows if r["optimizer"] == "looksam"} == {"fffffff"}
  assert {r["revision"] for r in rows if r["optimizer"] == "asam"} == {"1111111+fffffff"}


def test_the_variants_claims_from_those_rows(tmp_path):
  config = runner.load_config("variants")
  rows = collect.merge([], collect.collect(config, _hand_made_variants(tmp_path)))
  found = {(c.candidate, c.compression): c
           for c in claims.claims("variants", rows, config["claims"])}
  assert set(found) == {(c, k) for c in ("looksam ρ 0.05", "looksam ρ 0.05 (alpha0.1)",
                                         "asam ρ 0.5") for k in ("oneshot", "int8")}
  assert {c.reference for c in found.values()} == {"adam"}
  assert (found[("asam ρ 0.5", "int8")].reference_value,
          found[("asam ρ 0.5", "int8")].candidate_value) == (1.0, -0.5)
