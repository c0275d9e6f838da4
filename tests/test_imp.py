"""The IMP driver: exact sparsity schedule, rewinding, resumption, winning tickets."""

import dataclasses
import json

import jax
import numpy as np
import pytest
from safetensors.numpy import load_file

from conftest import check_run_json, write_sst2
from flatjax.errors import FlatjaxInputError
from flatjax.models import pretrained
from flatjax.recipes import imp
from flatjax.sparsity import masks
from flatjax.recipes import finetune
from flatjax.recipes.finetune import TrainConfig


def _config(data, out, tiny_model_dir, *, mode="imp", rounds=3, rate=0.2, method="magnitude",
            **kw):
  train = {"data": {"task": "sst2", "source": str(data), "max_length": 32},
           "model": {"name": str(tiny_model_dir)}, "optimizer": {"learning_rate": 1e-3},
           "run": {"output": str(out), "epochs": 1, "batch_size": 8, "seed": 1, "log_every": 1,
                   "save_every": 1, "progress": False}}
  for name, fields in kw.items():
    train[name] = {**train[name], **fields}
  return imp.IMPConfig(train=TrainConfig.from_dict(train), mode=mode, rounds=rounds, rate=rate,
                       method=method)


def _rows(run):
  return [json.loads(r) for r in (run / "rounds.jsonl").read_text().splitlines()]


def _prunable(tree):
  """The default scope's kernels, by name (written out by hand from BERT's layout)."""
  names = []
  for layer in ("0", "1"):
    base = f"bert/encoder/layer/{layer}"
    names += [f"{base}/attention/self/{m}/kernel" for m in ("query", "key", "value")]
    names += [f"{base}/attention/output/dense/kernel", f"{base}/intermediate/dense/kernel",
              f"{base}/output/dense/kernel"]
  names.append("bert/pooler/dense/kernel")
  flat = {masks.path_str(p): np.asarray(v)
          for p, v in jax.tree_util.tree_flatten_with_path(tree)[0]}
  return {n: flat[n] for n in names}


@pytest.fixture(scope="module")
def imp_run(tmp_path_factory, tiny_model_dir):
  tmp = tmp_path_factory.mktemp("imp")
  data = write_sst2(tmp / "sst2", n_train=24, n_dev=10)   # 3 steps per round
  config = _config(data, tmp / "run", tiny_model_dir)
  report = imp.run_imp(config)
  return config, tmp / "run", report, data


def test_sparsity_follows_the_schedule_exactly(imp_run, tiny_model_dir):
  _, run, report, data = imp_run
  rows = _rows(run)
  assert [r["round"] for r in rows] == [0, 1, 2, 3]
  sources = {"data": data, "eval_data": None, "model": tiny_model_dir, "mask": None}
  check_run_json(run, {"rounds": 3, "rate": 0.2}, sources)
  # Each round's own run: rewound to the pre-trained weights, under the round's mask.
  check_run_json(imp.round_dir(run, 2), {"optimizer.learning_rate": 1e-3},
                 {**sources, "mask": imp.mask_path(run, 0.4)})
  assert [r["target_sparsity"] for r in rows] == [0.0, 0.2, 0.4, 0.6]
  base = pretrained.from_pretrained(tiny_model_dir, finetune.get_task("sst2")).params
  sizes = {n: v.size for n, v in _prunable(base).items()}
  total = sum(sizes.values())
  previous = None
  for r in rows[1:]:
    m = masks.load_mask(imp.mask_path(run, r["target_sparsity"]), base)
    kept = _prunable(jax.tree.map(lambda x: np.asarray(x, np.float32), m))
    assert set(kept) == set(sizes)  # exactly the hand-listed scope
    pruned = sum(int((~v.astype(bool)).sum()) for v in kept.values())
    assert pruned == round(r["target_sparsity"] * total)
    assert r["sparsity"] == pytest.approx(pruned / total)
    if previous is not None:  # only ever removes more
      assert all(not (kept[n] > previous[n]).any() for n in kept)
    previous = kept
    side = json.loads(imp.mask_path(run, r["target_sparsity"]).with_suffix(".json").read_text())
    layer0 = [v for n, v in kept.items() if "/layer/0/" in n]
    assert side["layer_sparsity"]["layer 0"] == pytest.approx(
        1 - sum(int(v.sum()) for v in layer0) / sum(v.size for v in layer0))
    # The round's saved weights are exactly 0 wherever the mask prunes.
    final = load_file(str(imp.round_dir(run, r["round"]) / "final" / "model.safetensors"))
    for name, keep in kept.items():
      torch_name = name.replace("/", ".").replace(".kernel", ".weight")
      w = final[torch_name].T
      assert (w[keep == 0] == 0.0).all()
      assert (w[keep == 1] != 0.0).all()
  assert report["finished"] and report["full"] == rows[0]["metric"]
  assert (run / "imp.png").stat().st_size > 0
  assert json.loads((run / "ticket.json").read_text())["task"] == "sst2"


def test_rewinding_restores_pretrained_values_on_kept_weights(imp_run, tiny_model_dir):
  config, run, _, _ = imp_run
  base = pretrained.from_pretrained(tiny_model_dir, finetune.get_task("sst2"), seed=1).params
  for round_ in (1, 3):
    _, mask, start = finetune.initial_params(imp._round_config(config, run, round_, None))
    kept = _prunable(jax.tree.map(lambda x: np.asarray(x, np.float32), mask))
    got, want = _prunable(start), _prunable(base)
    for name, keep in kept.items():
      np.testing.assert_array_equal(got[name][keep == 1], want[name][keep == 1], err_msg=name)
      assert (got[name][keep == 0] == 0.0).all()
    # Outside the scope (embeddings, LayerNorm, the re-initialised head): pre-trained.
    for path in (("classifier", "kernel"), ("bert", "embeddings", "word_embeddings",
                                            "embedding")):
      a, b = start, base
      for k in path:
        a, b = a[k], b[k]
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_std_mode_continues_from_the_pruned_trained_weights(tmp_path, tiny_model_dir):
  data = write_sst2(tmp_path / "sst2", n_train=16, n_dev=8)
  config = _config(data, tmp_path / "run", tiny_model_dir, mode="std", rounds=1, rate=0.5)
  imp.run_imp(config)
  run = tmp_path / "run"
  trained = pretrained.from_pretrained(run / "round_00" / "final", finetune.get_task("sst2")).params
  _, mask, start = finetune.initial_params(imp._round_config(config, run, 1, None))
  kept = _prunable(jax.tree.map(lambda x: np.asarray(x, np.float32), mask))
  got, want = _prunable(start), _prunable(trained)
  for name, keep in kept.items():
    np.testing.assert_array_equal(got[name][keep == 1], want[name][keep == 1])
    assert (got[name][keep == 0] == 0.0).all()
  # Pruned exactly 50% of the scope by magnitude of the trained weights.
  flat = np.concatenate([np.abs(want[n]).ravel() for n in kept])
  keep = np.concatenate([kept[n].ravel() for n in kept]).astype(bool)
  assert keep.sum() == flat.size - round(0.5 * flat.size)
  assert flat[keep].min() >= flat[~keep].max()


def test_run_stopped_in_round_3_resumes_to_the_same_rounds(imp_run, tmp_path, tiny_model_dir):
  config, run, _, data = imp_run
  out = tmp_path / "resumed"
  stopped = dataclasses.replace(config, train=config.train.replace(run={"output": str(out)}),
                                stop_after_steps=3 * 3 + 2)   # 3 rounds of 3 steps, then 2
  assert not imp.run_imp(stopped)["finished"]
  assert len(_rows(out)) == 3
  assert (out / "round_03" / "checkpoints").is_dir() and not (out / "round_03" / "final").exists()
  with pytest.raises(FlatjaxInputError, match="already holds an IMP run"):
    imp.run_imp(dataclasses.replace(stopped, stop_after_steps=None))
  imp.run_imp(dataclasses.replace(stopped, stop_after_steps=None), resume=True)
  check_run_json(out, {"stop_after_steps": 11}, {
      "data": data, "eval_data": None, "model": tiny_model_dir, "mask": None}, resumed=1)
  keys = ("round", "target_sparsity", "sparsity", "metric", "best", "final",
          "before_retraining", "steps")
  assert [{k: r[k] for k in keys} for r in _rows(out)] == \
         [{k: r[k] for k in keys} for r in _rows(run)]
  a = load_file(str(run / "round_03" / "final" / "model.safetensors"))
  b = load_file(str(out / "round_03" / "final" / "model.safetensors"))
  for k in a:
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_winning_ticket_is_the_sparsest_round_within_tolerance():
  def row(r, s, m):
    return {"round": r, "target_sparsity": s, "sparsity": s, "metric": m,
            "metric_name": "validation/accuracy"}
  rows = [row(0, 0.0, 70.0), row(1, 0.1, 69.5), row(2, 0.2, 68.0), row(3, 0.3, 69.2),
          row(4, 0.4, 60.0), row(5, 0.5, 55.0), row(6, 0.6, 50.0)]
  report = imp.ticket_report(rows, "rte", tolerance=1.0)
  assert report["winning_ticket"]["sparsity"] == 0.3      # 68.0 at 20% is out, 69.2 at 30% in
  assert report["at_reference"] == {"round": 6, "sparsity": 0.6, "metric": 50.0}
  assert imp.ticket_report(rows, "rte", tolerance=0.0)["winning_ticket"]["round"] == 0
  assert imp.ticket_report(rows[:3], "rte", 1.0)["at_reference"] is None


def test_bad_settings_are_input_errors_before_anything_is_written(tmp_path, tiny_model_dir):
  data = write_sst2(tmp_path / "sst2")
  for kw, msg in ((dict(mode="rewind"), "mode"), (dict(rate=1.5), "rate"),
                  (dict(rounds=6, rate=0.2), "exceed"), (dict(method="movement"), "training"),
                  (dict(method="l0"), "unknown pruning method")):
    with pytest.raises(FlatjaxInputError, match=msg):
      imp.run_imp(_config(data, tmp_path / "bad", tiny_model_dir, **kw))
  # 2:4 removes a quarter of every group of 4 at a time: rounds of 0.1 cannot be 2:4.
  config = _config(data, tmp_path / "bad", tiny_model_dir, rounds=2, rate=0.1)
  with pytest.raises(FlatjaxInputError, match="one of 0.25, 0.5, got 0.1"):
    imp.run_imp(dataclasses.replace(config, granularity="2:4"))
  assert not (tmp_path / "bad").exists()
  with pytest.raises(FlatjaxInputError, match="nothing to resume"):
    imp.run_imp(_config(data, tmp_path / "bad", tiny_model_dir), resume=True)


def test_a_folder_of_another_command_is_refused_and_left_as_it_was(imp_run, tiny_model_dir):
  config, run, _, data = imp_run
  train_run = imp.round_dir(run, 0)              # a flatjax train run folder
  before = sorted(p.name for p in train_run.iterdir())
  with pytest.raises(FlatjaxInputError, match="not empty and holds no IMP run"):
    imp.run_imp(_config(data, train_run, tiny_model_dir))
  assert sorted(p.name for p in train_run.iterdir()) == before
  before = sorted(p.name for p in run.iterdir())
  with pytest.raises(FlatjaxInputError, match="not empty and holds no flatjax run"):
    finetune.fit(config.train)                   # train into the IMP run's folder
  assert sorted(p.name for p in run.iterdir()) == before
