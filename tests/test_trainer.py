"""The one training loop (flatjax.train.trainer): schedule, best tracking, and the
finite-loss guard, on a hand-made state whose loss is known at every step."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct

from conftest import write_sst2
from flatjax.cli import main as cli_main
from flatjax.errors import TrainingDiverged
from flatjax.train.trainer import Hooks, Schedule, Trainer


@struct.dataclass
class _State:
  step: jax.Array
  w: jax.Array


class _Batcher:
  """4 batches an epoch of 2 real rows each."""

  def epoch(self, epoch, start=0):
    for i in range(start, 4):
      yield {"x": np.full(2, 4 * epoch + i, np.float32), "example_weight": np.ones(2)}


def _strict(path):
  """The rows of a JSON Lines file, refusing NaN and infinities (not JSON)."""
  def refuse(name):
    raise ValueError(f"{name} in {path}")
  return [json.loads(line, parse_constant=refuse) for line in path.read_text().splitlines()]


def _run(tmp_path, nan_at=None, **schedule):
  """12 steps, an evaluation every epoch of 4; the loss of step s (1-based) is
  1/s, NaN at ``nan_at``; the dev score rises with w, which counts the steps."""
  saved = []

  def train_step(state, batch, step):
    loss = jnp.where(step + 1 == nan_at, jnp.nan, 1.0 / (step + 1))
    return state.replace(step=state.step + 1, w=state.w + 1.0), {"loss": loss,
                                                                "grad_norm": jnp.float32(1)}

  hooks = Hooks(train_step=train_step,
                evaluate=lambda state, step: {"validation/accuracy": float(state.w)},
                save_best=lambda state, step: saved.append(step))
  plan = Schedule(12, 4, **{"log_every": 2, **schedule})
  trainer = Trainer(tmp_path, plan, "validation/accuracy", progress=False)
  state = trainer.restore(_State(jnp.int32(0), jnp.float32(0)), resume=False)
  return trainer, state, hooks, saved


def test_the_loop_logs_evaluates_keeps_the_best_and_checkpoints(tmp_path):
  trainer, state, hooks, saved = _run(tmp_path)
  state, step = trainer.run(state, _Batcher(), hooks)
  assert step == 12 and float(state.w) == 12.0
  rows = _strict(tmp_path / "metrics.jsonl")
  train = [r for r in rows if r["kind"] == "train"]
  assert [r["step"] for r in train] == [2, 4, 6, 8, 10, 12]
  assert train[0]["loss"] == pytest.approx((1 + 1 / 2) / 2)   # steps 1 and 2
  assert [r["step"] for r in rows if r["kind"] == "eval"] == [4, 8, 12]
  assert saved == [4, 8, 12] and trainer.meta["best_step"] == 12
  assert trainer.ckpt.latest_step() == 12


def test_a_non_finite_loss_stops_the_run_before_anything_is_saved_from_it(tmp_path):
  trainer, state, hooks, saved = _run(tmp_path, nan_at=7)
  with pytest.raises(TrainingDiverged) as info:
    trainer.run(state, _Batcher(), hooks)
  err = info.value
  assert (err.step, err.name, err.last_good) == (7, "loss", 4)
  assert "step 7" in str(err) and "\n" not in str(err)
  assert saved == [4]                                  # the best before it, kept
  assert trainer.ckpt.latest_step() == 4               # no checkpoint at 8 (or after)
  rows = _strict(tmp_path / "metrics.jsonl")           # still JSON: NaN written as null
  assert [r["step"] for r in rows if r["kind"] == "train"] == [2, 4, 6, 8]
  assert rows[-1]["kind"] == "train" and rows[-1]["loss"] is None
  assert not any(r["kind"] == "eval" and r["step"] > 4 for r in rows)


def test_divergence_between_logs_is_caught_at_the_checkpoint_before_it(tmp_path):
  # Logged every 20 steps, saved every 3: the NaN at step 5 stops the run at the save of
  # step 6, not at the log of step 20.
  trainer, state, hooks, saved = _run(tmp_path, nan_at=5, save_every=3, log_every=20)
  with pytest.raises(TrainingDiverged) as info:
    trainer.run(state, _Batcher(), hooks)
  assert (info.value.step, info.value.last_good) == (5, 4)
  assert sorted(trainer.ckpt.manager.all_steps()) == [3, 4]


def test_flatjax_train_with_a_huge_learning_rate_exits_3_and_keeps_no_broken_model(
    tmp_path, tiny_model_dir, capsys):
  data = write_sst2(tmp_path / "sst2")
  out = tmp_path / "run"
  code = cli_main(["train", "--task", "sst2", "--model", str(tiny_model_dir), "--data",
                   str(data), "--lr", "1e30", "--epochs", "3", "--batch-size", "8",
                   "--max-length", "32", "--log-every", "1", "--output", str(out),
                   "--no-progress"])
  err = capsys.readouterr().err.strip().splitlines()
  assert code == 3
  assert err[-1].startswith("flatjax: error: training diverged: ")
  assert not (out / "final").exists()
  results = json.loads((out / "results.json").read_text())
  assert results["finished"] is False and results["stopped"] == "diverged"
  assert results["diverged"]["metric"] in ("loss", "grad_norm")
  rows = _strict(out / "metrics.jsonl")
  assert rows[-1]["step"] == results["diverged"]["step"]   # logged every step
  for name in ("best",):   # a best model, if any, is from before the divergence: finite
    if (out / name).exists():
      from safetensors.numpy import load_file
      weights = load_file(str(out / name / "model.safetensors"))
      assert all(np.all(np.isfinite(v)) for v in weights.values())
