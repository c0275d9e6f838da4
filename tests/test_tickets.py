"""Ticket grids: masks x optimizers, random controls, transfer, resumption."""

import json

import jax
import numpy as np
import pytest
from safetensors.numpy import load_file

from conftest import check_run_json, write_sst2
from flatjax.errors import FlatjaxInputError
from flatjax.models import pretrained
from flatjax.recipes import imp, tickets
from flatjax.sparsity import masks
from flatjax.recipes.finetune import TrainConfig, get_task


def _kernels(tree):
  """In-scope leaves by path, as numpy (None leaves dropped)."""
  flat = jax.tree_util.tree_flatten_with_path(tree, is_leaf=lambda x: x is None)[0]
  return {masks.path_str(p): np.asarray(v) for p, v in flat if v is not None}


@pytest.fixture(scope="module")
def grid(tmp_path_factory, tiny_model_dir):
  tmp = tmp_path_factory.mktemp("tickets")
  data = write_sst2(tmp / "sst2", n_train=16, n_dev=8)
  params = pretrained.from_pretrained(tiny_model_dir, get_task("sst2"), seed=2).params
  noise = jax.tree.map(lambda p: p + 0.01 * np.random.default_rng(0).standard_normal(p.shape)
                       .astype(np.float32), params)
  a = masks.magnitude_mask(params, 0.5)
  b = masks.magnitude_mask(noise, 0.7, granularity="per_tensor")
  masks.save_mask(tmp / "a.safetensors", a, metadata={"task": "sst2", "optimizer": "adam"})
  masks.save_mask(tmp / "b.safetensors", b, metadata={"task": "mrpc", "optimizer": "sam"})
  train = TrainConfig.from_dict({
      "data": {"task": "sst2", "source": str(data), "max_length": 32},
      "model": {"name": str(tiny_model_dir)}, "optimizer": {"learning_rate": 1e-3},
      "run": {"output": str(tmp / "grid"), "epochs": 1, "batch_size": 8, "seed": 2,
              "progress": False}})
  config = tickets.TicketsConfig(train=train, masks={"a": str(tmp / "a.safetensors"),
                                                     "b": str(tmp / "b.safetensors")},
                                 optimizers=("adam", "sam"), random_like="a", random_seed=5)
  rows = tickets.run_tickets(config)
  return config, rows, params, {"a": a, "b": b}


def test_every_cell_trains_the_pretrained_weights_under_its_mask(grid):
  config, rows, params, made = grid
  out = config.train.run.output
  assert [(r["mask"], r["optimizer"]) for r in rows] == [
      (m, o) for m in ("a", "b", "random") for o in ("adam", "sam")]
  random = masks.load_mask(f"{out}/masks/random.safetensors", params)
  for r in rows:
    mask = made.get(r["mask"], random)
    run_config = json.loads(open(f"{out}/{r['mask']}-{r['optimizer']}/config.json").read())
    assert run_config["config"]["optimizer"]["name"] == r["optimizer"]
    # the pre-trained weights
    assert run_config["config"]["model"]["name"] == config.train.model.name
    final = load_file(f"{out}/{r['mask']}-{r['optimizer']}/final/model.safetensors")
    start = _kernels(params)
    for path, keep in _kernels(mask).items():
      name = path.replace("/", ".").replace(".kernel", ".weight")
      w = final[name].T
      assert (w[~keep] == 0.0).all(), (r["mask"], path)
      assert not np.allclose(w[keep], start[path][keep]), (r["mask"], path)   # trained
    expected = 1 - sum(int(k.sum()) for k in _kernels(mask).values()) / sum(
        k.size for k in _kernels(mask).values())
    assert r["sparsity"] == pytest.approx(expected)


def test_random_control_matches_per_tensor_counts_and_transfer_is_labelled(grid):
  config, rows, params, made = grid
  random = _kernels(masks.load_mask(f"{config.train.run.output}/masks/random.safetensors",
                                    params))
  like = _kernels(made["a"])
  assert random.keys() == like.keys()
  assert all(random[k].sum() == like[k].sum() for k in like)
  assert any((random[k] != like[k]).any() for k in like)
  by = {(r["mask"], r["optimizer"]): r for r in rows}
  assert by[("b", "adam")]["mask_task"] == "mrpc" and by[("b", "adam")]["task"] == "sst2"
  assert by[("a", "sam")]["mask_optimizer"] == "adam"
  table = open(f"{config.train.run.output}/tickets.md").read()
  line = next(l for l in table.splitlines() if l.startswith("| b (mrpc, sam)"))
  assert f"{by[('b', 'adam')]['metric']:.2f}" in line and "70%" in line


def test_finished_grid_resumes_without_training_and_settings_are_checked(grid):
  config, rows, _, _ = grid
  with pytest.raises(FlatjaxInputError, match="already holds a tickets run"):
    tickets.run_tickets(config)
  import dataclasses
  changed = dataclasses.replace(config, optimizers=("adam",),
                                train=config.train.replace(optimizer={"learning_rate": 5e-4}))
  with pytest.raises(FlatjaxInputError,
                     match=r"different settings \(optimizers, train.optimizer.learning_rate\)"):
    tickets.run_tickets(changed, resume=True)
  before = sorted(p.stat().st_mtime for p in
                  __import__("pathlib").Path(config.train.run.output).rglob("model.safetensors"))
  assert tickets.run_tickets(config, resume=True) == rows
  check_run_json(config.train.run.output, {"masks": config.masks, "random_seed": 5}, {
      "data": config.train.data.source, "eval_data": None, "model": config.train.model.name,
      "mask": None,
      "mask a": config.masks["a"], "mask b": config.masks["b"]}, resumed=1)
  after = sorted(p.stat().st_mtime for p in
                 __import__("pathlib").Path(config.train.run.output).rglob("model.safetensors"))
  assert before == after


def test_mask_sources_resolve_and_bad_ones_are_input_errors(tmp_path, grid):
  config, *_ = grid
  cell = f"{config.train.run.output}/a-adam"
  assert tickets.resolve_mask(cell).name == masks.MASK_FILE
  run = tmp_path / "imp"
  (run / "masks").mkdir(parents=True)
  (run / "imp.json").write_text("{}")
  imp.mask_path(run, 0.6).write_bytes(b"")
  assert tickets.resolve_mask(str(run), 0.6) == imp.mask_path(run, 0.6)
  with pytest.raises(FlatjaxInputError, match="give --sparsity"):
    tickets.resolve_mask(str(run))
  with pytest.raises(FlatjaxInputError, match="no mask at sparsity 0.3"):
    tickets.resolve_mask(str(run), 0.3)
  with pytest.raises(FlatjaxInputError, match="no mask at"):
    tickets.resolve_mask(str(tmp_path / "nowhere"))
  bad = tickets.TicketsConfig(train=config.train, masks={"a": config.masks["a"]},
                              random_like="zzz")
  with pytest.raises(FlatjaxInputError, match="not a mask label"):
    tickets.run_tickets(bad)
  for label in ("../../X", "a/b", "..", ""):
    escape = tickets.TicketsConfig(train=config.train, masks={label: config.masks["a"]})
    with pytest.raises(FlatjaxInputError, match="must be a plain name"):
      tickets.run_tickets(escape)
  assert not (tmp_path.parent / "X-adam").exists()
  from safetensors.numpy import load_file, save_file
  odd = tmp_path / "odd.safetensors"
  save_file(load_file(config.masks["a"]), str(odd), metadata={"sparsity": "lots"})
  (tmp_path / "junk.safetensors").write_bytes(b"junk")
  fresh = config.train.replace(run={"output": str(tmp_path / "g2")})
  for path, match in ((odd, "records its sparsity as 'lots'"),
                      (tmp_path / "junk.safetensors", "is not a mask file")):
    with pytest.raises(FlatjaxInputError, match=match):
      tickets.run_tickets(tickets.TicketsConfig(train=fresh, masks={"a": str(path)}))
  assert not (tmp_path / "g2").exists()
