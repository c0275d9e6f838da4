"""The CoFi driver (flatjax.recipes.cofi): the Lagrangian reaches its target on
a tiny BERT, a whole run exports a model equal to its gated student, a stopped
run resumes to the same result, and bad settings are refused up front."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from safetensors.numpy import load_file

from conftest import check_run_json, write_sst2
from flatjax.cli import main as cli_main
from flatjax.data.tasks import get_task
from flatjax.errors import FlatjaxInputError
from flatjax.models import BertConfig, build_module, init_params
from flatjax.models.pretrained import from_pretrained
from flatjax.recipes import cofi
from flatjax.sparsity import hardconcrete as hc, structured
from flatjax.recipes import finetune
from flatjax.train import distill


def _tiny_state(target, steps_to_warm, micro_batches=1, dropout=0.1):
  cfg = BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                   intermediate_size=48, max_position_embeddings=32,
                   hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
  task = get_task("sst2")
  module = build_module(cfg, task)
  teacher, student = init_params(module, 1), init_params(module, 2)
  rng = np.random.default_rng(0)
  batch = {"input_ids": jnp.asarray(rng.integers(1, 64, (8, 16)), jnp.int32),
           "attention_mask": jnp.ones((8, 16), jnp.int32),
           "token_type_ids": jnp.zeros((8, 16), jnp.int32),
           "labels": jnp.asarray(rng.integers(0, 2, 8), jnp.int32),
           "example_weight": jnp.ones(8)}
  dims = hc.ModelDims.from_config(cfg)
  params = {"model": student, "layer_map": {"kernel": jnp.eye(32), "bias": jnp.zeros(32)}}
  log_alpha = hc.init_log_alpha(jax.random.key(0), dims.gate_shapes())
  tx = cofi._model_tx(optax.constant_schedule(1e-3), True, params)
  gate_tx, lambda_tx = optax.adam(0.05), optax.adam(0.05)
  steps = cofi.CofiSteps(module, module, task, dims, distill.DistillConfig(num_teacher_layers=2),
                         [0, 1], target, 0, steps_to_warm, tx, tx, gate_tx, lambda_tx,
                         micro_batches=micro_batches)
  lambdas = jnp.zeros(2)
  state = cofi.CofiState(
      params=params, log_alpha=log_alpha, lambdas=lambdas, opt_state=tx.init(params),
      gate_opt_state=gate_tx.init(log_alpha), lambda_opt_state=lambda_tx.init(lambdas),
      step=jnp.zeros((), jnp.int32),
      rng=jax.random.key_data(jax.random.key(0, impl="threefry4x32")))
  return steps, state, teacher, batch, dims


def test_lagrangian_drives_a_tiny_bert_to_the_target_sparsity():
  """Distillation plus the Lagrangian, every gate group learned: the expected
  sparsity (recomputed here from the closed form 1 - Q(0) of the final
  log-alphas) settles within 2 points of the target."""
  target = 0.5
  steps, state, teacher, batch, dims = _tiny_state(target, 50)
  start = float(hc.expected_sparsity(state.log_alpha, dims))
  history = []
  for _ in range(500):
    state, m = steps.pruning(state, teacher, batch)
    history.append(float(m["expected_sparsity"]))
  assert abs(start - target) > 0.05  # it had to move
  assert float(m["target_sparsity"]) == pytest.approx(target)
  la = jax.device_get(state.log_alpha)
  keep = {k: 1 / (1 + np.exp(-(v - (2 / 3) * np.log(0.1 / 1.1)))) for k, v in la.items()}
  head = keep["head"] * keep["mha"][:, None]
  inter = keep["intermediate"] * keep["ffn"][:, None]
  d, hs = 32, 8
  expected = keep["hidden"].sum() * (head.sum() * hs * 4 + inter.sum() * 2)
  final = 1 - expected / (2 * (4 * d * 4 * hs + 2 * d * 48))
  assert abs(final - target) < 0.02
  assert abs(np.mean(history[-100:]) - target) < 0.02


def test_micro_batched_steps_equal_the_whole_batch_step():
  """Every phase's step (distillation, pruning with sampled gates and the Lagrangian,
  fine-tuning under fixed gates) over 2 or 4 micro-batches gives the whole-batch step's
  weights, gates, multipliers and losses within 1e-5 (dropout off, so the micro-batches'
  own dropout keys do not matter), with rows of uneven length and a padding row, so the
  batch's token and row totals differ from any micro-batch's."""
  def one_step(micro_batches, phase):
    steps, state, teacher, batch, _ = _tiny_state(0.5, 2, micro_batches, dropout=0.0)
    lengths = np.array([16, 3, 9, 16, 5, 12, 7, 2])
    batch["attention_mask"] = jnp.asarray(np.arange(16)[None] < lengths[:, None], jnp.int32)
    batch["example_weight"] = jnp.asarray([1, 1, 1, 1, 1, 1, 1, 0], jnp.float32)
    # Gates away from 10 so the pruning phase's gate gradients are not all ~0.
    state = state.replace(log_alpha=jax.tree.map(lambda a: a * 0.1, state.log_alpha))
    return getattr(steps, phase)(state, teacher, batch)

  for phase in ("prepruning", "pruning", "finetune"):
    want_state, want = one_step(1, phase)
    for k in (2, 4):
      state, metrics = one_step(k, phase)
      for got, expected in zip(jax.tree.leaves((state.params, state.log_alpha, state.lambdas)),
                               jax.tree.leaves((want_state.params, want_state.log_alpha,
                                                want_state.lambdas))):
        np.testing.assert_allclose(np.asarray(got), np.asarray(expected), atol=1e-5)
      for name in ("loss", "layer_loss", "prediction_loss"):
        np.testing.assert_allclose(float(metrics[name]), float(want[name]), rtol=1e-5, atol=1e-7)
  moved = jax.tree.leaves(jax.tree.map(lambda a, b: jnp.max(jnp.abs(a - b)),
                                       want_state.params, _tiny_state(0.5, 2)[1].params))
  assert max(float(m) for m in moved) > 1e-4  # the step did change the weights


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory, tiny_model_dir):
  tmp = tmp_path_factory.mktemp("cofi")
  data = write_sst2(tmp / "sst2", n_train=24, n_dev=10)
  finetune.fit(finetune.TrainConfig.from_dict({
      "data": {"task": "sst2", "source": str(data), "max_length": 32, "pad_to": "max_length"},
      "model": {"name": str(tiny_model_dir)}, "optimizer": {"learning_rate": 1e-3},
      "run": {"output": str(tmp / "teacher"), "epochs": 1, "batch_size": 8,
              "progress": False}}))
  return tmp, data


def _config(tmp, out, **kw):
  settings = dict(teacher=str(tmp / "teacher"), output=str(out), target_sparsity=0.5,
                  pruning_epochs=3, prepruning_epochs=1, lagrangian_warmup_epochs=1,
                  finetune_epochs=2, batch_size=8, max_length=32, lr=1e-3, finetune_lr=1e-3,
                  reg_lr=0.1, pad_to="max_length", progress=False, log_every=1)
  settings.update(kw)
  return cofi.CofiConfig(**settings)


@pytest.fixture(scope="module")
def cofi_run(teacher_run):
  tmp, _ = teacher_run
  results = cofi.run_cofi(_config(tmp, tmp / "run"))
  return tmp, tmp / "run", results


def test_run_exports_the_gated_student(cofi_run, tiny_model_dir):
  tmp, run, results = cofi_run
  assert results["finished"]
  check_run_json(run, {"target_sparsity": 0.5, "reg_lr": 0.1}, {
      "data": tmp / "sst2", "eval_data": None, "model": tiny_model_dir, "mask": None,
      "teacher": tmp / "teacher" / "best"})
  rows = [json.loads(r) for r in (run / "metrics.jsonl").read_text().splitlines()]
  train = [r for r in rows if r["kind"] == "train"]
  assert [r["step"] for r in train] == list(range(1, 16))  # 3 steps/epoch, 5 epochs
  phases = [r["phase"] for r in train]
  assert phases == ["distill"] * 3 + ["prune"] * 6 + ["finetune"] * 6
  assert all("expected_sparsity" in r for r in train if r["phase"] == "prune")
  # The exported model scores exactly what the gated student scored at the best step.
  best = next(r for r in rows if r["kind"] == "eval" and r["step"] == results["best_step"])
  main = results["main_metric"]
  assert results["pruned"][main] == pytest.approx(best[main])
  # Its structure is what the saved deterministic gates keep.
  saved = load_file(str(run / "gates.safetensors"))
  gates = {k.split("/", 1)[1]: v for k, v in saved.items() if k.startswith("gates/")}
  pruned = from_pretrained(run / "pruned")
  units = structured.remaining_units(
      from_pretrained(tmp / "teacher" / "best").config, gates)
  assert pruned.config.hidden_size == len(units["hidden"])
  assert list(pruned.config.layer_num_heads) == [len(l["heads"]) for l in units["layers"]]
  assert results["encoder_params"]["pruned"] == structured.encoder_params(pruned.config)
  assert results["sparsity"] == pytest.approx(
      1 - results["encoder_params"]["pruned"] / results["encoder_params"]["teacher"])
  assert results["examples_per_s"]["pruned"] > 0 and results["teacher"][main] >= 0
  # Dev predictions: the student's score the accuracy of its predictions; the teacher's
  # the ones its own training run saved with its best model.
  split = main.split("/")[0]
  student = results["predictions"]["pruned"][split]
  right = [a == b for a, b in zip(student["predictions"], student["labels"])]
  assert results["pruned"][main] == pytest.approx(100 * np.mean(right))
  saved = json.loads((tmp / "teacher" / "best" / "predictions.json").read_text())[split]
  assert results["predictions"]["teacher"][split] == saved


def test_the_cofi_run_exports_its_pruned_model_as_onnx(cofi_run):
  pytest.importorskip("onnxruntime")
  tmp, run, _ = cofi_run
  out = tmp / "cofi-onnx"
  assert cli_main(["export", str(run), "--output", str(out), "--no-progress"]) == 0
  found = json.loads((out / "export.json").read_text())
  assert found["model"].endswith("pruned") and found["check"]["max_abs_diff"]["logits"] <= 1e-4


def test_stopped_run_resumes_to_the_same_result(cofi_run, tmp_path):
  tmp, run, results = cofi_run
  out = tmp_path / "run"
  stopped = cofi.run_cofi(_config(tmp, out, stop_after_steps=7))  # inside the pruning phase
  assert stopped == {"step": 7, "total_steps": 15, "finished": False}
  resumed = cofi.run_cofi(_config(tmp, out), resume=True)
  for k in ("sparsity", "pruned", "teacher", "best_step", "encoder_params"):
    assert resumed[k] == results[k]
  a, b = load_file(str(run / "gates.safetensors")), load_file(str(out / "gates.safetensors"))
  for k in a:
    np.testing.assert_array_equal(a[k], b[k])
  a = load_file(str(run / "pruned" / "model.safetensors"))
  b = load_file(str(out / "pruned" / "model.safetensors"))
  for k in a:
    np.testing.assert_array_equal(a[k], b[k])


def test_gate_init_sets_the_coarse_gates_start(teacher_run, tmp_path):
  """Stopped at the end of the distillation-only epoch (gates not yet learned):
  head, mha, ffn and hidden log-alphas start at ``gate_init`` (CoFi's noise, std
  0.01), the neuron gates at log(1 - 0.5) - log(0.5) = 0."""
  import orbax.checkpoint as ocp
  tmp, _ = teacher_run
  out = tmp_path / "run"
  cofi.run_cofi(_config(tmp, out, gate_init=3.0, stop_after_steps=3))
  state = ocp.StandardCheckpointer().restore((out / "checkpoints" / "3" / "state").resolve())
  for name, value in state["log_alpha"].items():
    expected = 0.0 if name == "intermediate" else 3.0
    np.testing.assert_allclose(np.asarray(value), expected, atol=0.05)


def test_bad_settings_are_refused_before_anything_is_written(teacher_run, tmp_path):
  tmp, _ = teacher_run
  out = tmp_path / "bad"
  for kw, message in ((dict(target_sparsity=1.2), "target sparsity"),
                      (dict(prepruning_epochs=3), "prepruning"),
                      (dict(gates=("head", "neuron")), "unknown gate"),
                      (dict(teacher=str(tmp_path / "none")), "not a folder"),
                      (dict(layer_weight=-1.0), "layer_weight"),
                      (dict(gate_init=float("nan")), "gate-init"),
                      (dict(grad_accum=3), "does not split into 3"),
                      (dict(grad_accum=0), "grad_accum")):
    with pytest.raises(FlatjaxInputError, match=message):
      cofi.run_cofi(_config(tmp, out, **kw))
    assert not out.exists()
  # From the command line: one line, exit status 2.
  code = cli_main(["cofi", "--teacher", str(tmp / "teacher"), "--output", str(out),
                   "--target-sparsity", "0", "--no-progress"])
  assert code == 2 and not out.exists()
