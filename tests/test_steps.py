"""Losses and the jitted train/eval steps against PyTorch on the same weights."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import flatjax
from flatjax.data.tasks import get_task
from flatjax.models import from_pretrained
from flatjax.optim import OptimizerConfig, make_optimizer, names
from flatjax.train import losses, state as state_lib, steps

B, L = 4, 12


def _tiny_config(**kw):
  return transformers.BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2,
                                 num_attention_heads=4, intermediate_size=64,
                                 max_position_embeddings=32, **kw)


def _batch(rng, regression=False):
  ids = rng.integers(5, 100, (B, L)).astype(np.int32)
  mask = np.ones((B, L), np.int32)
  mask[1, 7:] = 0
  mask[3, 4:] = 0
  types = np.zeros((B, L), np.int32)
  types[:, 6:] = 1
  labels = rng.uniform(0, 5, B).astype(np.float32) if regression else np.array(
      [0, 1, 1, 0], np.int32)
  return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types,
          "labels": labels, "example_weight": np.ones(B, np.float32),
          "start_positions": np.array([1, 3, 0, 2], np.int32),
          "end_positions": np.array([2, 5, 0, 3], np.int32)}


def _torch_inputs(batch):
  return {k: torch.tensor(batch[k]).long()
          for k in ("input_ids", "attention_mask", "token_type_ids")}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
  """Tiny random PyTorch models with their task heads, saved as Hugging Face folders."""
  torch.manual_seed(0)
  out = {}
  for name, cls, kw in [
      ("rte", transformers.BertForSequenceClassification, {"num_labels": 2}),
      ("stsb", transformers.BertForSequenceClassification, {"num_labels": 1}),
      ("squad", transformers.BertForQuestionAnswering, {})]:
    model = cls(_tiny_config(**kw)).eval()
    path = tmp_path_factory.mktemp(name)
    model.save_pretrained(path)
    out[name] = (model, path)
  return out


@pytest.mark.parametrize("task_name", ["rte", "stsb", "squad"])
def test_loss_and_gradients_match_pytorch(saved, task_name):
  model, path = saved[task_name]
  task = get_task(task_name)
  pt = from_pretrained(path, task)
  batch = _batch(np.random.default_rng(1), regression=task.is_regression)
  loss_fn = losses.make_loss_fn(pt.module, task, deterministic=True)
  (loss, _), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      pt.params, batch, jax.random.key(0))

  model.zero_grad()
  inputs = _torch_inputs(batch)
  if task.kind == "span":
    ref = model(**inputs, start_positions=torch.tensor(batch["start_positions"]).long(),
                end_positions=torch.tensor(batch["end_positions"]).long())
  else:
    labels = torch.tensor(batch["labels"])
    ref = model(**inputs, labels=labels if task.is_regression else labels.long())
  ref.loss.backward()
  assert float(loss) == pytest.approx(ref.loss.item(), rel=1e-5, abs=1e-6)
  torch_grads = dict(model.named_parameters())
  q = torch_grads["bert.encoder.layer.1.attention.self.query.weight"].grad.numpy().T
  np.testing.assert_allclose(
      grads["bert"]["encoder"]["layer"]["1"]["attention"]["self"]["query"]["kernel"], q,
      atol=1e-6, rtol=1e-4)
  w = torch_grads["bert.embeddings.word_embeddings.weight"].grad.numpy()
  np.testing.assert_allclose(grads["bert"]["embeddings"]["word_embeddings"]["embedding"], w,
                             atol=1e-6, rtol=1e-4)


def test_padding_rows_do_not_change_the_loss(saved):
  _, path = saved["rte"]
  task = get_task("rte")
  pt = from_pretrained(path, task)
  batch = _batch(np.random.default_rng(2))
  loss_fn = losses.make_loss_fn(pt.module, task, deterministic=True)
  half = {k: v[:2] for k, v in batch.items()}
  padded = {k: v.copy() for k, v in batch.items()}
  padded["example_weight"][2:] = 0.0
  key = jax.random.key(0)
  assert float(loss_fn(pt.params, padded, key)[0]) == pytest.approx(
      float(loss_fn(pt.params, half, key)[0]), rel=1e-6)


def test_train_step_applies_adam_to_pytorch_gradients(saved):
  model, path = saved["rte"]
  task = get_task("rte")
  pt = from_pretrained(path, task)
  batch = _batch(np.random.default_rng(3))
  lr = 1e-3
  tx = make_optimizer(OptimizerConfig("adam", learning_rate=lr), total_steps=10)
  step = jax.jit(steps.make_train_step(
      losses.make_loss_fn(pt.module, task, deterministic=True), tx))
  state = state_lib.create(pt.params, tx, seed=0)
  new_state, metrics = step(state, batch)
  assert int(new_state.step) == 1

  model.zero_grad()
  model(**_torch_inputs(batch), labels=torch.tensor(batch["labels"]).long()).loss.backward()
  g = model.classifier.weight.grad.numpy().T
  # First Adam step: -lr * g / (|g| + eps) (bias-corrected moments equal g and g^2).
  want = np.asarray(pt.params["classifier"]["kernel"]) - lr * g / (np.abs(g) + 1e-8)
  big = np.abs(g) > 1e-5  # where |g| ~ eps the sign of a float32 rounding decides
  np.testing.assert_allclose(np.asarray(new_state.params["classifier"]["kernel"])[big],
                             want[big], atol=1e-6)
  assert float(metrics["loss"]) > 0


def test_masked_weights_are_zeroed_get_zero_gradient_and_do_not_move(saved):
  _, path = saved["rte"]
  task = get_task("rte")
  pt = from_pretrained(path, task)
  kernel = pt.params["bert"]["encoder"]["layer"]["0"]["intermediate"]["dense"]["kernel"]
  keep = np.random.default_rng(4).random(kernel.shape) > 0.5
  mask = jax.tree.map(lambda _: None, pt.params)
  mask["bert"]["encoder"]["layer"]["0"]["intermediate"]["dense"]["kernel"] = jnp.asarray(keep)
  tx = make_optimizer(OptimizerConfig("adam", learning_rate=1e-2), total_steps=10)
  step = jax.jit(steps.make_train_step(losses.make_loss_fn(pt.module, task), tx))
  state = state_lib.create(pt.params, tx, seed=0, mask=mask)
  created = state.params["bert"]["encoder"]["layer"]["0"]["intermediate"]["dense"]["kernel"]
  assert np.all(np.asarray(created)[~keep] == 0.0)    # the state zeros pruned weights
  np.testing.assert_array_equal(np.asarray(created)[keep], np.asarray(kernel)[keep])
  for i in range(3):
    state, _ = step(state, _batch(np.random.default_rng(10 + i)))
  after = np.asarray(state.params["bert"]["encoder"]["layer"]["0"]["intermediate"]["dense"][
      "kernel"])
  np.testing.assert_array_equal(after[~keep], 0.0)
  assert np.abs(after[keep] - np.asarray(kernel)[keep]).max() > 1e-4


@pytest.mark.parametrize("name", names())
def test_pruned_weights_stay_exactly_zero_under_every_registered_optimizer(saved, name):
  from flatjax.optim.swa import averaged_params
  from flatjax.sparsity import apply_mask, magnitude_mask
  _, path = saved["rte"]
  task = get_task("rte")
  pt = from_pretrained(path, task)
  mask = magnitude_mask(pt.params, 0.5)
  # Weight decay (decoupled, on every param; adam has none) and SWA must not revive
  # pruned weights.
  config = OptimizerConfig(name, learning_rate=1e-2, weight_decay=0.0 if name == "adam" else 0.1,
                           swa="0.0:1")   # from the start, every step
  tx = make_optimizer(config, total_steps=6)
  step = jax.jit(steps.make_train_step(losses.make_loss_fn(pt.module, task), tx))
  state = state_lib.create(apply_mask(pt.params, mask), tx, seed=0, mask=mask)
  for i in range(6):
    state, _ = step(state, _batch(np.random.default_rng(20 + i)))
  swa_params = averaged_params(state.opt_state)[0]
  n_pruned = 0
  leaves = lambda t: [np.asarray(x) for x in jax.tree.leaves(
      jax.tree.map(lambda m, p: p if m is not None else None, mask, t,
                   is_leaf=lambda x: x is None))]
  keeps = [np.asarray(m) for m in jax.tree.leaves(mask)]
  before = leaves(pt.params)
  for after in (leaves(state.params), leaves(swa_params)):
    for keep, a, b in zip(keeps, after, before):
      assert (a[~keep] == 0.0).all()
      assert np.abs(a[keep] - b[keep]).max() > 1e-4   # the kept weights did train
      n_pruned += int((~keep).sum())
  assert n_pruned > 0


def test_dropout_key_depends_on_seed_and_step_only(saved):
  _, path = saved["rte"]
  task = get_task("rte")
  pt = from_pretrained(path, task)
  tx = make_optimizer(OptimizerConfig("adam"), total_steps=10)
  a = state_lib.create(pt.params, tx, seed=7)
  b = state_lib.create(pt.params, tx, seed=7)
  c = state_lib.create(pt.params, tx, seed=8)
  bits = lambda s: np.asarray(jax.random.bits(state_lib.step_key(s), (4,)))
  np.testing.assert_array_equal(bits(a), bits(b))
  assert not np.array_equal(bits(a), bits(c))
  assert not np.array_equal(bits(a), bits(a.replace(step=a.step + 1)))


def test_eval_step_returns_logits_of_the_deterministic_model(saved):
  model, path = saved["rte"]
  pt = from_pretrained(path, get_task("rte"))
  batch = _batch(np.random.default_rng(5))
  out = jax.jit(steps.make_eval_step(pt.module))(pt.params, None, batch)
  with torch.no_grad():
    ref = model(**_torch_inputs(batch)).logits.numpy()
  np.testing.assert_allclose(out["logits"], ref, atol=1e-5)


def test_sam_train_step_matches_pytorch_sam_with_a_pruning_mask(saved):
  # PyTorch SAM by hand: g at w (masked forward), e = rho g/||g||, g_adv at w + e,
  # then SGD. The pruned entries of one kernel stay at 0 and are not perturbed.
  model, path = saved["rte"]
  task = get_task("rte")
  pt = from_pretrained(path, task)
  batch = _batch(np.random.default_rng(6))
  rho, lr = 0.5, 0.1
  name = ("bert", "encoder", "layer", "1", "output", "dense", "kernel")
  torch_name = "bert.encoder.layer.1.output.dense.weight"
  kernel = pt.params
  for k in name:
    kernel = kernel[k]
  keep = np.random.default_rng(7).random(kernel.shape) > 0.3
  mask = jax.tree.map(lambda _: None, pt.params)
  node = mask
  for k in name[:-1]:
    node = node[k]
  node[name[-1]] = jnp.asarray(keep)

  tx = optax.chain(flatjax.sam(rho), optax.sgd(lr))
  step = jax.jit(steps.make_train_step(
      losses.make_loss_fn(pt.module, task, deterministic=True), tx))
  new_state, metrics = step(state_lib.create(pt.params, tx, seed=0, mask=mask), batch)

  params = dict(model.named_parameters())
  keep_t = torch.tensor(keep.T)
  original = {k: v.detach().clone() for k, v in params.items()}

  def grads_at(values):
    with torch.no_grad():
      for k, v in params.items():
        v.copy_(values[k] * keep_t if k == torch_name else values[k])
    model.zero_grad()
    out = model(**_torch_inputs(batch), labels=torch.tensor(batch["labels"]).long())
    out.loss.backward()
    return out.loss.item(), {k: v.grad.clone() * (keep_t if k == torch_name else 1)
                             for k, v in params.items()}

  _, g = grads_at(original)
  norm = torch.sqrt(sum((v.double() ** 2).sum() for v in g.values())).float()
  perturbed = {k: original[k] + rho * g[k] / norm for k in g}
  adv_loss, g_adv = grads_at(perturbed)
  assert float(metrics["perturbed_loss"]) == pytest.approx(adv_loss, rel=1e-5)
  assert float(metrics["perturbed_loss"]) > float(metrics["loss"])

  got = np.asarray(new_state.params["bert"]["encoder"]["layer"]["1"]["output"]["dense"][
      "kernel"])
  want = (original[torch_name] - lr * g_adv[torch_name]).numpy().T
  want[~keep] = 0.0                     # zeroed when the state was created, then not moved
  np.testing.assert_allclose(got, want, atol=2e-6, rtol=1e-4)
  np.testing.assert_array_equal(got[~keep], 0.0)
  q = "bert.encoder.layer.0.attention.self.query.weight"
  np.testing.assert_allclose(
      np.asarray(new_state.params["bert"]["encoder"]["layer"]["0"]["attention"]["self"][
          "query"]["kernel"]), (original[q] - lr * g_adv[q]).numpy().T, atol=2e-6, rtol=1e-4)
