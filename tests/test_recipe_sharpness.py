"""``flatjax sharpness RUN`` end to end on a tiny fine-tuned BERT: the loss it
measures is the mean cross-entropy over the sample (recomputed here one
unpadded sentence at a time), the measures are consistent with it, the plots
are written, and bad input is refused with nothing written."""

from __future__ import annotations

import json

import jax.numpy as jnp
import numpy as np
import pytest

from conftest import check_run_json, fine_tune_tiny
from flatjax.cli import main as cli_main
from flatjax.data import glue
from flatjax.data.tasks import get_task
from flatjax.models.pretrained import from_pretrained, load_tokenizer


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_model_dir):
  tmp = tmp_path_factory.mktemp("sharpness")
  return tmp, fine_tune_tiny(tmp, tiny_model_dir, n_train=20)


def _reference_loss(model_dir, data, n):
  """Mean cross-entropy of the first ``n`` training sentences, each alone, unpadded."""
  model = from_pretrained(model_dir)
  tokenizer = load_tokenizer(model_dir)
  examples = glue.load_glue(get_task("sst2"), str(data), "train")
  total = 0.0
  for i in range(n):
    enc = tokenizer(examples.text_a[i], truncation=True, max_length=32, return_tensors="np")
    logits = np.asarray(model.module.apply(
        {"params": model.params}, jnp.asarray(enc["input_ids"]),
        jnp.asarray(enc["attention_mask"]), jnp.asarray(enc["token_type_ids"]))["logits"][0],
        np.float64)
    log_z = np.log(np.sum(np.exp(logits - logits.max()))) + logits.max()
    total += log_z - logits[examples.labels[i]]
  return total / n


def test_sharpness_command_measures_the_sample_loss(tiny_run, capsys):
  tmp, data = tiny_run
  out = tmp / "flat"
  flags = ["sharpness", str(tmp / "run"), "--examples", "20", "--batch-size", "8",
           "--epsilon", "1e-3", "--epsilon", "5e-3", "--maxiter", "3",
           "--hessian-iterations", "5", "--hutchinson-samples", "3",
           "--surface-points", "5", "--contour-points", "3", "--radius", "0.5",
           "--output", str(out), "--no-progress"]
  assert cli_main(flags) == 0
  check_run_json(out, {"examples": 20, "epsilons": [1e-3, 5e-3]},
                 {"model": tmp / "run" / "best", "data": data}, argv=["flatjax", *flags])
  summary = json.loads(capsys.readouterr().out)
  r = json.loads((out / "sharpness.json").read_text())
  assert r["sample"]["examples"] == 20 and r["optimizer"] == "adam"
  # 20 of 20 examples in 3 batches (the last padded with weight-0 rows): the plain mean.
  assert r["loss"] == pytest.approx(_reference_loss(tmp / "run" / "best", data, 20), abs=1e-5)
  assert summary["loss"] == r["loss"]
  for k, eps in zip(r["keskar"], (1e-3, 5e-3)):
    assert k["epsilon"] == eps and k["max_loss"] >= r["loss"]
    assert k["sharpness"] == pytest.approx(100 * (k["max_loss"] - r["loss"]) / (1 + r["loss"]))
  # A larger box holds the smaller one: L-BFGS-B's first step goes to the corner the
  # gradient points at, and that corner's loss rises with epsilon.
  assert r["keskar"][1]["max_loss"] >= r["keskar"][0]["max_loss"]
  assert summary["epsilon_sharpness"] == {"0.001": r["keskar"][0]["sharpness"],
                                          "0.005": r["keskar"][1]["sharpness"]}
  assert 1 <= r["hessian_top_eigenvalue"]["iterations"] <= 5
  assert r["hessian_trace"]["num_samples"] == 3 and r["hessian_trace"]["stderr"] >= 0
  s1 = r["surface_1d"]
  assert s1["alphas"] == pytest.approx([-0.5, -0.25, 0.0, 0.25, 0.5])
  assert s1["losses"][2] == pytest.approx(r["loss"], abs=1e-6)  # the trained params
  s2 = np.asarray(r["surface_2d"]["losses"])
  assert s2.shape == (3, 3) and s2[1, 1] == pytest.approx(r["loss"], abs=1e-6)
  for png in ("surface_1d.png", "surface_2d.png"):
    assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("flags", [["--contour-points", "1"], ["--hutchinson-samples", "1"],
                                   ["--split", "test"], ["--epsilon", "0"]])
def test_bad_input_exits_2_with_nothing_written(tiny_run, flags, capsys):
  tmp, _ = tiny_run
  out = tmp / "bad"
  # Every setting is checked before anything is read or written.
  assert cli_main(["sharpness", str(tmp / "run"), "--output", str(out), *flags]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith("flatjax: error: ")
  assert not out.exists()


def test_missing_run_exits_2(tmp_path):
  assert cli_main(["sharpness", str(tmp_path / "none"), "--no-progress"]) == 2



def test_an_output_folder_holding_another_run_is_refused(tiny_run, capsys):
  tmp, _ = tiny_run
  before = sorted(p.name for p in (tmp / "run").iterdir())
  assert cli_main(["sharpness", str(tmp / "run"), "--output", str(tmp / "run")]) == 2
  assert "holds another run (config.json)" in capsys.readouterr().err
  assert sorted(p.name for p in (tmp / "run").iterdir()) == before
