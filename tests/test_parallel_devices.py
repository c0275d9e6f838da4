"""Sharded training on 8 CPU devices against the one-device run.

JAX fixes its device count when it starts, so in the normal test run this
module starts a second pytest on itself with
``XLA_FLAGS=--xla_force_host_platform_device_count=8`` and reports its result;
that process (``jax.device_count() == 8``) runs the real tests:

* a few train steps of a tiny BERT on (data=4, model=2), (8, 1) and (1, 8)
  meshes give params within 1e-5 of the one-device run, for Adam, SAM and a
  masked (pruned) Adam run;
* every param's and optimizer-state leaf's ``.sharding`` is what the rules'
  hand-written table says (tests/test_parallel_rules.py);
* a checkpoint saved on one mesh restores onto another;
* ``fit`` and CoFi on a mesh end where their one-device runs end;
* per-shard SAM (m-sharpness) differs from global SAM exactly as the formulas
  say, on a linear least-squares model worked by hand in numpy.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

DEVICES = 8

# ``flatjax.recipes.finetune.fit`` of a tiny BERT, made by the one-device process and
# passed to the 8-device one: its run folder, model and data, and a CoFi run from it.
ONE_DEVICE_RUN = "FLATJAX_TEST_ONE_DEVICE_RUN"


def fit_config(model_dir, data, output, **sections):
  from flatjax.recipes import finetune
  settings = {"data": {"task": "sst2", "source": str(data), "max_length": 32},
              "model": {"name": str(model_dir)}, "optimizer": {"learning_rate": 1e-3},
              "run": {"output": str(output), "epochs": 2, "batch_size": 8, "eval_batch_size": 8,
                      "progress": False}}
  for name, fields in sections.items():
    settings[name] = {**settings.get(name, {}), **fields}
  return finetune.TrainConfig.from_dict(settings)


def cofi_config(teacher, output, **overrides):
  from flatjax.recipes import cofi
  settings = dict(teacher=str(teacher), output=str(output), target_sparsity=0.5,
                  pruning_epochs=2, prepruning_epochs=1, lagrangian_warmup_epochs=1,
                  finetune_epochs=1, batch_size=8, eval_batch_size=8, max_length=32, lr=1e-3,
                  finetune_lr=1e-3, reg_lr=0.1, progress=False)
  return cofi.CofiConfig(**{**settings, **overrides})


def _device_env(devices: int, **extra: str) -> dict:
  return {**os.environ, "XLA_FLAGS": (os.environ.get("XLA_FLAGS", "") +
                                      f" --xla_force_host_platform_device_count={devices}"),
          "JAX_PLATFORMS": "cpu", **extra}


if jax.device_count() < DEVICES:
  @pytest.fixture(scope="module")
  def one_device_run(tmp_path_factory, tiny_model_dir):
    from conftest import write_sst2
    from flatjax.recipes import cofi, finetune
    tmp = tmp_path_factory.mktemp("one_device")
    data = write_sst2(tmp / "sst2", n_train=48, n_dev=20)
    finetune.fit(fit_config(tiny_model_dir, data, tmp / "one-device"))
    cofi.run_cofi(cofi_config(tmp / "one-device", tmp / "cofi"))
    return tmp / "one-device", tiny_model_dir, data, tmp / "cofi"

  def test_two_processes_train_as_one_device(one_device_run, tmp_path):
    """``flatjax train --mesh data=4,model=2`` as 2 processes of 4 CPU devices each
    (jax.distributed over gloo, as on 2 hosts): each feeds its half of every
    batch, the first alone logs and writes; the final model is the one-device run's."""
    import json
    import socket
    from flatjax.models import from_pretrained
    reference, model_dir, data, _ = one_device_run
    with socket.socket() as s:
      s.bind(("localhost", 0))
      port = s.getsockname()[1]
    out = tmp_path / "two-processes"
    command = [sys.executable, "-m", "flatjax.cli", "train", "--task", "sst2", "--model",
               str(model_dir), "--data", str(data), "--epochs", "2", "--batch-size", "8",
               "--eval-batch-size", "8", "--max-length", "32", "--lr", "1e-3", "--mesh",
               "data=4,model=2", "--output", str(out), "--no-progress"]
    procs = [subprocess.Popen(command, env=_device_env(
        4, FLATJAX_DISTRIBUTED="1", JAX_COORDINATOR_ADDRESS=f"localhost:{port}",
        JAX_NUM_PROCESSES="2", JAX_PROCESS_ID=str(i)), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True) for i in range(2)]
    logs = [p.communicate(timeout=600) for p in procs]
    for p, (stdout, stderr) in zip(procs, logs):
      assert p.returncode == 0, stderr[-4000:]
    assert "steps/epoch" in logs[0][1] and "steps/epoch" not in logs[1][1]  # process 0 logs
    got = json.loads((out / "results.json").read_text())
    want = json.loads((reference / "results.json").read_text())
    assert got["final"] == pytest.approx(want["final"]) and got["step"] == want["step"]
    a, b = (from_pretrained(r / "final").params for r in (out, reference))
    assert max(float(np.max(np.abs(x - y))) for x, y in
               zip(jax.tree.leaves(a), jax.tree.leaves(b))) <= 1e-5

  def test_sharded_training_on_8_cpu_devices(one_device_run):
    env = _device_env(DEVICES, **{ONE_DEVICE_RUN: os.pathsep.join(map(str, one_device_run))})
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           str(Path(__file__).resolve())], env=env, capture_output=True,
                          text=True, cwd=Path(__file__).resolve().parent.parent)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    assert " passed" in proc.stdout and "skipped" not in proc.stdout, proc.stdout[-2000:]
else:
  import jax.numpy as jnp
  import optax

  import flatjax
  from flatjax import parallel
  from flatjax.data.tasks import get_task
  from flatjax.models import BertConfig, build_module, init_params
  from flatjax.optim import OptimizerConfig, make_optimizer
  from flatjax.sparsity import masks
  from flatjax.train import losses, state as state_lib, steps
  from flatjax.train.trainer import Checkpointer
  from test_parallel_rules import EXPECTED, OTHERS

  TASK = get_task("sst2")
  CONFIG = BertConfig(vocab_size=1000, hidden_size=32, num_hidden_layers=2,
                      num_attention_heads=4, intermediate_size=64, max_position_embeddings=64)
  MODULE = build_module(CONFIG, TASK)
  MESHES = ["data=4,model=2", "data=8", "model=8"]
  STEPS = 3

  def make_batch(i, rows=8, length=16):
    r = np.random.default_rng(i)
    attention = np.ones((rows, length), np.int32)
    attention[:, r.integers(6, length):] = 0
    return {"input_ids": r.integers(1, CONFIG.vocab_size, (rows, length)).astype(np.int32),
            "attention_mask": attention,
            "token_type_ids": np.zeros((rows, length), np.int32),
            "labels": r.integers(0, 2, rows).astype(np.int32),
            "example_weight": np.ones(rows, np.float32)}

  @pytest.fixture(scope="module")
  def params():
    return init_params(MODULE, seed=0)

  def train(params, optimizer, mesh_spec=None, mask=None):
    tx = make_optimizer(OptimizerConfig(optimizer, learning_rate=1e-3), total_steps=10)
    state = state_lib.create(params, tx, seed=0, mask=mask)
    step = steps.make_train_step(losses.make_loss_fn(MODULE, TASK), tx)
    if mesh_spec is None:
      jitted = jax.jit(step)
      for i in range(STEPS):
        state, _ = jitted(state, make_batch(i))
      return state
    mesh = parallel.make_mesh(mesh_spec)
    state, shardings = parallel.shard_state(state, params, mesh)
    jitted = parallel.jit_train_step(step, shardings, mesh)
    for i in range(STEPS):
      state, metrics = jitted(state, parallel.shard_batch(make_batch(i), mesh))
    assert np.isfinite(float(metrics["loss"]))
    return state

  @pytest.fixture(scope="module")
  def one_device(params):
    mask = masks.magnitude_mask(params, 0.5)
    return {"adam": train(params, "adam"), "sam": train(params, "sam"),
            "masked": train(params, "adam", mask=mask)}, mask

  def max_diff(a, b):
    return max(float(jnp.max(jnp.abs(x - y))) for x, y in
               zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))

  @pytest.mark.parametrize("mesh_spec", MESHES)
  @pytest.mark.parametrize("run", ["adam", "sam", "masked"])
  def test_sharded_training_equals_one_device(params, one_device, run, mesh_spec):
    reference, mask = one_device
    state = train(params, "adam" if run == "masked" else run, mesh_spec,
                  mask=mask if run == "masked" else None)
    assert max_diff(state.params, reference[run].params) <= 1e-5
    if run == "masked":  # zeroed when the state was made, then no gradient: still 0.0
      def zero(m, after):
        if m is not None:
          assert np.all(np.asarray(after)[~np.asarray(m)] == 0.0)
      jax.tree.map(zero, mask, state.params, is_leaf=lambda x: x is None)

  def expected_spec(path: str):
    if path in OTHERS:
      return OTHERS[path]
    return EXPECTED[path.split("/", 4)[4]]  # bert/encoder/layer/N/<rest>

  def test_state_is_sharded_as_the_rules_declare(params):
    mask = masks.magnitude_mask(params, 0.5)
    mesh = parallel.make_mesh("data=4,model=2")
    tx = make_optimizer(OptimizerConfig("sam", learning_rate=1e-3), total_steps=10)
    state, _ = parallel.shard_state(state_lib.create(params, tx, seed=0, mask=mask), params, mesh)
    step = parallel.jit_train_step(steps.make_train_step(losses.make_loss_fn(MODULE, TASK), tx),
                                   parallel.state_shardings(state, params, mesh), mesh)
    state, _ = step(state, parallel.shard_batch(make_batch(0), mesh))  # and after a step
    checked = 0
    for tree in (state.params, state.mask, *_param_trees(state.opt_state)):
      for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        name = "/".join(str(k.key) for k in path)
        assert leaf.sharding.spec == expected_spec(name), name
        assert leaf.sharding.mesh.shape == {"data": 4, "model": 2}
        checked += 1
    # params, Adam's mu and nu, and the mask's kernels (None elsewhere)
    assert checked == 3 * len(jax.tree.leaves(params)) + len(jax.tree.leaves(mask))
    for leaf in (state.step, state.rng):
      assert leaf.sharding.is_fully_replicated
    query = state.params["bert"]["encoder"]["layer"]["0"]["attention"]["self"]["query"]["kernel"]
    assert {s.data.shape for s in query.addressable_shards} == {(32, 16)}  # columns split in 2

  def _param_trees(opt_state):
    """Adam's mu and nu (the param-shaped parts of the registry's SAM + Adam state)."""
    found = []

    def visit(node):
      if hasattr(node, "mu") and hasattr(node, "nu"):
        found.extend([node.mu, node.nu])
      elif isinstance(node, (tuple, list)):
        for child in node:
          visit(child)
    visit(opt_state)
    assert len(found) == 2
    return found

  def test_checkpoint_saved_on_one_mesh_restores_on_another(params, tmp_path):
    tx = make_optimizer(OptimizerConfig("adam", learning_rate=1e-3), total_steps=10)
    fresh = state_lib.create(params, tx, seed=0)
    mesh_a, mesh_b = parallel.make_mesh("data=4,model=2"), parallel.make_mesh("model=8")
    state, shardings = parallel.shard_state(fresh, params, mesh_a)
    state, _ = parallel.jit_train_step(
        steps.make_train_step(losses.make_loss_fn(MODULE, TASK), tx), shardings, mesh_a)(
            state, parallel.shard_batch(make_batch(0), mesh_a))
    saved = jax.device_get(state)
    ckpt = Checkpointer(tmp_path / "ckpt")
    ckpt.save(1, state, {"note": "mesh a"})
    ckpt.close()
    like, _ = parallel.shard_state(fresh, params, mesh_b)
    restored, meta = Checkpointer(tmp_path / "ckpt").restore(1, like)
    assert meta == {"note": "mesh a"}
    assert max_diff(jax.device_get(restored), saved) == 0
    for got, want in zip(jax.tree.leaves(restored), jax.tree.leaves(like)):
      assert got.sharding == want.sharding  # on mesh b, as the rules say for it
    query = restored.params["bert"]["encoder"]["layer"]["0"]["attention"]["self"]["query"]
    assert query["kernel"].sharding.spec == jax.sharding.PartitionSpec(None, "model")
    assert {s.data.shape for s in query["kernel"].addressable_shards} == {(32, 4)}

  # ---------------------------------------------------------------- m-sharpness

  def linear_loss(params, batch, rng):
    del rng
    residual = batch["x"] @ params["w"] - batch["y"]
    return 0.5 * jnp.mean(residual ** 2), {}

  def hand_sam_step(w, x, y, rho, lr, shards):
    """One SAM + SGD step of 0.5 mean (x w - y)^2, by hand: the data split into
    ``shards`` equal parts, each perturbing with its own gradient; the
    perturbed gradients averaged. ``shards=1`` is global SAM."""
    def grad(w, x, y):
      return x.T @ (x @ w - y) / len(y)
    g_adv = []
    for xs, ys in zip(np.split(x, shards), np.split(y, shards)):
      g = grad(w, xs, ys)
      e = rho * g / (np.linalg.norm(g) + 1e-12)
      g_adv.append(grad(w + e, xs, ys))
    return w - lr * np.mean(g_adv, axis=0)

  @pytest.mark.parametrize("mesh_spec, shards", [("data=2,model=4", 2), ("data=8", 8)])
  def test_per_shard_sam_is_m_sharpness(mesh_spec, shards):
    r = np.random.default_rng(0)
    x = r.normal(size=(16, 3)).astype(np.float32)
    y = r.normal(size=16).astype(np.float32)
    w = r.normal(size=3).astype(np.float32)
    rho, lr = 0.5, 0.1
    batch = {"x": x, "y": y, "example_weight": np.ones(16, np.float32)}
    mesh = parallel.make_mesh(mesh_spec)
    params = {"w": jnp.asarray(w)}
    results = {}
    for kind in ("global", "per_shard"):
      axis = "data" if kind == "per_shard" else None
      tx = optax.chain(flatjax.sam(rho, batch_axis_name=axis), optax.sgd(lr))
      state, shardings = parallel.shard_state(state_lib.create(params, tx, seed=0), params, mesh)

      def make_step(tx=tx):
        return steps.make_train_step(linear_loss, tx)
      if kind == "global":
        step = parallel.jit_train_step(make_step(), shardings, mesh)
      else:
        step = parallel.jit_train_step_m_sharpness(make_step, shardings, mesh)
      new, metrics = step(state, parallel.shard_batch(batch, mesh))
      results[kind] = np.asarray(new.params["w"], np.float64)
    x64, y64, w64 = (a.astype(np.float64) for a in (x, y, w))
    want_global = hand_sam_step(w64, x64, y64, rho, lr, 1)
    want_shard = hand_sam_step(w64, x64, y64, rho, lr, shards)
    np.testing.assert_allclose(results["global"], want_global, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(results["per_shard"], want_shard, rtol=1e-5, atol=1e-6)
    # The two differ, by the difference of the formulas, far beyond float32 noise.
    assert np.abs(want_shard - want_global).max() > 1e-3
    np.testing.assert_allclose(results["per_shard"] - results["global"],
                               want_shard - want_global, rtol=1e-3, atol=1e-6)

  # ---------------------------------------------------------------- the training loop

  def _final_params(run):
    from flatjax.models import from_pretrained
    return from_pretrained(run / "final").params

  def test_fit_on_meshes_equals_one_device_and_resumes_onto_another_mesh(tmp_path):
    """``fit`` with ``--mesh``: the same run as on one device (final params and
    dev scores); stopped on one mesh, resumed on another, the same again."""
    import json
    from flatjax.recipes import finetune
    if ONE_DEVICE_RUN not in os.environ:
      pytest.skip("run through the one-device test run, which makes the reference")
    reference, model_dir, data, _ = map(Path, os.environ[ONE_DEVICE_RUN].split(os.pathsep))
    want = json.loads((reference / "results.json").read_text())
    ref_params = _final_params(reference)
    finetune.fit(fit_config(model_dir, data, tmp_path / "a", run={"mesh": "data=4,model=2"}))
    finetune.fit(fit_config(model_dir, data, tmp_path / "b",
                            run={"mesh": "model=8", "stop_after_steps": 5}))
    got_b = finetune.fit(fit_config(model_dir, data, tmp_path / "b", run={"mesh": "data=8"}),
                         resume=True)
    for run in ("a", "b"):
      got = json.loads((tmp_path / run / "results.json").read_text())
      assert got["final"] == pytest.approx(want["final"]) and got["step"] == want["step"]
      assert max_diff(_final_params(tmp_path / run), ref_params) <= 1e-5
    assert got_b["finished"]
    config = json.loads((tmp_path / "b" / "config.json").read_text())["config"]
    assert config["run"]["mesh"] == "model=8"  # the mesh it started on; resuming may change it

  def test_fit_refuses_a_batch_that_does_not_split(tmp_path):
    from flatjax.errors import FlatjaxInputError
    from flatjax.recipes import finetune
    if ONE_DEVICE_RUN not in os.environ:
      pytest.skip("run through the one-device test run")
    _, model_dir, data, _ = map(Path, os.environ[ONE_DEVICE_RUN].split(os.pathsep))
    with pytest.raises(FlatjaxInputError, match="does not divide over the mesh"):
      finetune.fit(fit_config(model_dir, data, tmp_path / "c",
                              run={"mesh": "data=8", "batch_size": 12}))
    assert not (tmp_path / "c").exists()

  def test_cofi_on_a_mesh_equals_one_device_and_resumes_onto_another_mesh(tmp_path):
    """CoFi's student, gates and multipliers sharded like any train state, the
    teacher by the same rules: the gates it learns and the model it exports are
    the one-device run's; stopped on one mesh, it resumes on another."""
    import json
    from safetensors.numpy import load_file
    from flatjax.models import from_pretrained
    from flatjax.recipes import cofi
    if ONE_DEVICE_RUN not in os.environ:
      pytest.skip("run through the one-device test run, which makes the reference")
    teacher, _, _, reference = map(Path, os.environ[ONE_DEVICE_RUN].split(os.pathsep))
    cofi.run_cofi(cofi_config(teacher, tmp_path / "a", mesh="data=4,model=2"))
    cofi.run_cofi(cofi_config(teacher, tmp_path / "b", mesh="model=8", stop_after_steps=7))
    cofi.run_cofi(cofi_config(teacher, tmp_path / "b", mesh="data=8"), resume=True)
    want = json.loads((reference / "results.json").read_text())
    ref_gates = load_file(str(reference / "gates.safetensors"))
    ref_params = from_pretrained(reference / "pruned").params
    for run in ("a", "b"):
      got = json.loads((tmp_path / run / "results.json").read_text())
      assert got["pruned"] == pytest.approx(want["pruned"])
      assert got["structure"] == want["structure"] and got["best_step"] == want["best_step"]
      gates = load_file(str(tmp_path / run / "gates.safetensors"))
      assert max(float(np.max(np.abs(gates[k] - ref_gates[k]))) for k in ref_gates) <= 1e-4
      assert max_diff(from_pretrained(tmp_path / run / "pruned").params, ref_params) <= 1e-4
    rows = (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()
    assert len(rows) == len((reference / "metrics.jsonl").read_text().splitlines())
