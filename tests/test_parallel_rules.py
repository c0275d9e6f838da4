"""The mesh configuration and the sharding rules, checked against hand-written
tables (one process, no devices needed: the rules only read the mesh's shape).
Training on real 8-device meshes is tests/test_parallel_devices.py."""

from __future__ import annotations

import numpy as np
import pytest
from jax.sharding import AbstractMesh, AxisType, PartitionSpec as P

from flatjax.errors import FlatjaxInputError
from flatjax.models import BertConfig, build_module
from flatjax.models.pretrained import param_shapes
from flatjax.data.tasks import get_task
from flatjax.parallel import rules
from flatjax.parallel.mesh import MeshConfig


def mesh(data, model):
  return AbstractMesh((data, model), ("data", "model"), axis_types=(AxisType.Auto,) * 2)


@pytest.mark.parametrize("spec, devices, shape", [
    (None, 8, (8, 1)), ("", 1, (1, 1)), ("data=4,model=2", 8, (4, 2)), ("model=8", 8, (1, 8)),
    ("data=8", 8, (8, 1)), ("model=2", 8, (4, 2)), ("data=2", 8, (2, 4)),
    ("model=2, data=4", 8, (4, 2)),
])
def test_mesh_config_fills_the_missing_axis(spec, devices, shape):
  assert MeshConfig.parse(spec).shape(devices) == shape


@pytest.mark.parametrize("spec, devices, message", [
    ("data=4,model=4", 8, "needs 16 devices"), ("model=3", 8, "does not divide"),
    ("data=3", 8, "does not divide"), ("batch=2", 8, "axis=size"), ("data=2,data=4", 8, "once"),
    ("data=x", 8, "not an integer"), ("model=0", 8, "at least 1"), ("data", 8, "axis=size"),
])
def test_bad_mesh_configs_raise(spec, devices, message):
  with pytest.raises(FlatjaxInputError, match=message):
    MeshConfig.parse(spec).shape(devices)


# Megatron-LM's layout, written out by hand for one encoder layer and the rest of BERT.
EXPECTED = {
    "attention/self/query/kernel": P(None, "model"),
    "attention/self/key/kernel": P(None, "model"),
    "attention/self/value/kernel": P(None, "model"),
    "attention/self/query/bias": P("model"),
    "attention/self/key/bias": P("model"),
    "attention/self/value/bias": P("model"),
    "attention/output/dense/kernel": P("model", None),
    "attention/output/dense/bias": P(),
    "attention/output/LayerNorm/scale": P(),
    "attention/output/LayerNorm/bias": P(),
    "intermediate/dense/kernel": P(None, "model"),
    "intermediate/dense/bias": P("model"),
    "output/dense/kernel": P("model", None),
    "output/dense/bias": P(),
    "output/LayerNorm/scale": P(),
    "output/LayerNorm/bias": P(),
}
OTHERS = {
    "bert/embeddings/word_embeddings/embedding": P("model", None),
    "bert/embeddings/position_embeddings/embedding": P(),
    "bert/embeddings/token_type_embeddings/embedding": P(),
    "bert/embeddings/LayerNorm/scale": P(),
    "bert/embeddings/LayerNorm/bias": P(),
    "bert/pooler/dense/kernel": P(),
    "bert/pooler/dense/bias": P(),
    "classifier/kernel": P(),
    "classifier/bias": P(),
}


def shapes(vocab=1000, hidden=32, heads=4, ffn=64, layers=2):
  config = BertConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers,
                      num_attention_heads=heads, intermediate_size=ffn,
                      max_position_embeddings=64)
  return param_shapes(build_module(config, get_task("sst2")))


def test_every_bert_param_gets_megatrons_spec():
  flat = shapes()
  expected = dict(OTHERS)
  for layer in range(2):
    expected.update({f"bert/encoder/layer/{layer}/{k}": v for k, v in EXPECTED.items()})
  assert sorted(flat) == sorted(expected)  # the table covers every param
  for name, s in flat.items():
    assert rules.spec_for(name, s.shape, mesh(4, 2)) == expected[name], name


def test_word_embeddings_fall_back_to_the_hidden_dimension():
  # BERT's real vocabulary: 30,522 = 2 x 3 x 5,087 splits over 2 devices, not over 4 or 8.
  name, shape = "bert/embeddings/word_embeddings/embedding", (30522, 768)
  assert rules.spec_for(name, shape, mesh(4, 2)) == P("model", None)
  assert rules.spec_for(name, shape, mesh(2, 4)) == P(None, "model")
  assert rules.spec_for(name, shape, mesh(1, 8)) == P(None, "model")
  assert rules.spec_for(name, (30522, 30), mesh(1, 8)) == P()  # neither divides: replicated


def test_undividable_columns_are_replicated():
  # 12 heads x 8 = 96 columns split over 8; 36 FFN neurons do not.
  flat = shapes(hidden=96, heads=12, ffn=36)
  m = mesh(1, 8)
  assert rules.spec_for("bert/encoder/layer/0/attention/self/query/kernel",
                        flat["bert/encoder/layer/0/attention/self/query/kernel"].shape, m) == \
      P(None, "model")
  assert rules.spec_for("bert/encoder/layer/0/intermediate/dense/kernel",
                        flat["bert/encoder/layer/0/intermediate/dense/kernel"].shape, m) == P()


def test_one_device_mesh_splits_nothing_that_matters():
  for name, s in shapes().items():
    spec = rules.spec_for(name, s.shape, mesh(1, 1))
    assert rules.fits(spec, s.shape, mesh(1, 1))


def test_fits_counts_every_axis_of_a_dimension():
  m = mesh(4, 2)
  assert rules.fits(P(("data", "model")), (16,), m)
  assert not rules.fits(P(("data", "model")), (12,), m)
  assert not rules.fits(P(None, None, "model"), (4, 4), m)  # more dims than the array


def test_batch_size_must_divide_over_data():
  from jax.sharding import Mesh
  import jax
  one = Mesh(np.array(jax.devices()[:1]).reshape(1, 1), ("data", "model"))
  rules.check_batch_size(7, one)
  with pytest.raises(FlatjaxInputError, match="does not divide"):
    rules.check_batch_size(6, mesh(4, 2))
