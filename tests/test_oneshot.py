"""One-shot pruning curves, checked against PyTorch with the same weights pruned by numpy
(STS-B, whose Pearson metric moves with every weight, unlike a tiny model's accuracy)."""

import json

import numpy as np
import pytest

from conftest import check_run_json
from flatjax.errors import FlatjaxInputError
from flatjax.recipes import oneshot
from flatjax.recipes.finetune import TrainConfig

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

# Chen et al.'s scope in PyTorch's names (Linear weights), written out by hand.
_SCOPE = ("attention.self.query.weight", "attention.self.key.weight",
          "attention.self.value.weight", "attention.output.dense.weight",
          "intermediate.dense.weight", "output.dense.weight")


def _write_stsb(folder, seed=0):
  """STS-B as hub-schema JSON Lines: random sentence pairs, random scores."""
  from conftest import _WORDS
  rng = np.random.default_rng(seed)
  folder.mkdir(parents=True)
  for split, n in (("train", 24), ("validation", 30)):
    rows = [{"sentence1": " ".join(rng.choice(_WORDS, rng.integers(3, 10))),
             "sentence2": " ".join(rng.choice(_WORDS, rng.integers(3, 10))),
             "label": float(rng.uniform(0, 5)), "idx": i} for i in range(n)]
    (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
  return folder


def _torch_pearson(model_dir, folder, prune):
  """Dev Pearson (x100) of the PyTorch model after ``prune`` zeroed weights in place in
  the scope's weights (``{name: [out, in] tensor}``, encoder kernels and pooler)."""
  from scipy.stats import pearsonr
  tok = transformers.AutoTokenizer.from_pretrained(str(model_dir))
  model = transformers.BertForSequenceClassification.from_pretrained(str(model_dir)).eval()
  with torch.no_grad():
    prune({n: p for n, p in model.named_parameters()
           if (n.startswith("bert.encoder.layer.") and n.endswith(_SCOPE))
           or n == "bert.pooler.dense.weight"})
  rows = [json.loads(l) for l in (folder / "validation.jsonl").read_text().splitlines()]
  enc = tok([r["sentence1"] for r in rows], [r["sentence2"] for r in rows], padding=True,
            truncation=True, max_length=32, return_tensors="pt")
  with torch.no_grad():
    pred = model(**enc).logits[:, 0].numpy()
  return 100.0 * pearsonr(pred, [r["label"] for r in rows])[0]


def _smallest(sparsity):
  """``prune``: the smallest |w| of the whole scope, ``round(sparsity * n)`` of them."""
  def prune(params):
    flat = np.concatenate([np.abs(p.detach().numpy()).ravel() for p in params.values()])
    k = int(round(sparsity * flat.size))
    if k:
      threshold = np.sort(flat)[k - 1]
      assert (flat == threshold).sum() == 1   # random floats: no tie at the cut
      for p in params.values():
        p[p.abs() <= threshold] = 0.0
  return prune


def _two_of_every_four(params):
  """``prune``: in every row ([out, in]), the 2 smallest |w| of each 4 consecutive inputs."""
  for p in params.values():
    w = p.detach().numpy()
    groups = np.abs(w).reshape(w.shape[0], w.shape[1] // 4, 4)
    smallest = np.argsort(groups, axis=-1, kind="stable")[..., :2]
    keep = np.ones_like(groups, bool)
    np.put_along_axis(keep, smallest, False, axis=-1)
    p.copy_(torch.tensor(w * keep.reshape(w.shape)))


@pytest.fixture(scope="module")
def trained(make_tiny_hf, minilm_dir, tmp_path_factory):
  """A random tiny regression BERT (every weight drawn at std 0.1, so its outputs
  spread and Pearson moves with every pruned weight) with MiniLM's tokenizer."""
  import shutil
  folder, _ = make_tiny_hf("BertForSequenceClassification", seed=3, num_labels=1,
                           vocab_size=30522)
  for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt",
               "special_tokens_map.json"):
    if (minilm_dir / name).exists():
      shutil.copy(minilm_dir / name, folder / name)
  return folder, _write_stsb(tmp_path_factory.mktemp("oneshot") / "stsb")


def test_curve_matches_pytorch_pruned_by_numpy(trained, tmp_path):
  model_dir, data = trained
  base = TrainConfig.from_dict({"data": {"task": "stsb", "source": str(data), "max_length": 32},
                                "run": {"output": str(tmp_path), "progress": False}})
  curves = oneshot.run_oneshot(base, {"a": str(model_dir)}, tmp_path / "out", step=0.3,
                               maximum=0.9, log=lambda _: None)
  rows = curves["a"]
  assert [r["target_sparsity"] for r in rows] == [0.0, 0.3, 0.6, 0.9]
  for r in rows:
    want = _torch_pearson(model_dir, data, _smallest(r["target_sparsity"]))
    assert r["metric"] == pytest.approx(want, abs=1e-3)
    assert r["sparsity"] == pytest.approx(r["target_sparsity"], abs=1e-4)  # round(s * n) / n
  assert len({round(r["metric"], 3) for r in rows}) == 4   # each pruning step shows
  saved = [json.loads(l) for l in (tmp_path / "out" / "oneshot.jsonl").read_text().splitlines()]
  assert [r["metric"] for r in saved] == [r["metric"] for r in rows]
  assert (tmp_path / "out" / "oneshot.png").stat().st_size > 0
  assert "| 90% |" in (tmp_path / "out" / "oneshot.md").read_text()

  # A second call reuses the rows already written instead of recomputing them.
  again = oneshot.run_oneshot(base, {"a": str(model_dir)}, tmp_path / "out", step=0.3,
                              maximum=0.9, log=lambda _: None)
  assert again["a"] == rows
  assert len((tmp_path / "out" / "oneshot.jsonl").read_text().splitlines()) == 4
  check_run_json(tmp_path / "out", {"step": 0.3, "maximum": 0.9, "models": {"a": str(model_dir)}},
                 {"data": data, "eval_data": None, "model a": model_dir}, resumed=1)


def test_2_4_curve_matches_pytorch_pruned_2_of_every_4_by_numpy(trained, tmp_path):
  model_dir, data = trained
  base = TrainConfig.from_dict({"data": {"task": "stsb", "source": str(data), "max_length": 32},
                                "run": {"output": str(tmp_path), "progress": False}})
  rows = oneshot.run_oneshot(base, {"a": str(model_dir)}, tmp_path / "out", step=0.5,
                             maximum=0.5, granularity="2:4", log=lambda _: None)["a"]
  assert [r["sparsity"] for r in rows] == [0.0, 0.5]
  assert rows[1]["metric"] == pytest.approx(
      _torch_pearson(model_dir, data, _two_of_every_four), abs=1e-3)
  with pytest.raises(FlatjaxInputError, match="one of 0.25, 0.5, got 0.3"):
    oneshot.run_oneshot(base, {"a": str(model_dir)}, tmp_path / "bad", step=0.3, maximum=0.6,
                        granularity="2:4")


def test_random_method_prunes_the_exact_count_and_is_recorded(trained, tmp_path):
  model_dir, data = trained
  base = TrainConfig.from_dict({"data": {"task": "stsb", "source": str(data), "max_length": 32},
                                "run": {"output": str(tmp_path), "progress": False}})
  rows = oneshot.run_oneshot(base, {"r": str(model_dir)}, tmp_path / "out", step=0.5,
                             maximum=0.5, method="random", log=lambda _: None)["r"]
  # The default scope (encoder kernels and pooler) of the tiny BERT: 2 layers of
  # 4 x 64x64 + 64x128 + 128x64 kernels, and the 64x64 pooler.
  n = 2 * (4 * 64 * 64 + 2 * 64 * 128) + 64 * 64
  assert [r["sparsity"] for r in rows] == [0.0, round(0.5 * n) / n]
  assert rows[0]["metric"] == pytest.approx(_torch_pearson(model_dir, data, _smallest(0.0)),
                                             abs=1e-3)
  assert rows[1]["metric"] != rows[0]["metric"]
  check_run_json(tmp_path / "out", {"method": "random"},
                 {"data": data, "eval_data": None, "model r": model_dir})
  with pytest.raises(FlatjaxInputError, match="training"):
    oneshot.run_oneshot(base, {"r": str(model_dir)}, tmp_path / "m", method="movement")
  assert not (tmp_path / "m").exists()


def test_grid_and_bad_input(tmp_path):
  assert oneshot.sparsity_grid(0.05, 0.6) == [round(0.05 * i, 6) for i in range(13)]
  assert oneshot.sparsity_grid(0.25, 0.6) == [0.0, 0.25, 0.5]
  with pytest.raises(FlatjaxInputError):
    oneshot.sparsity_grid(0.0, 0.6)
  with pytest.raises(FlatjaxInputError, match="does not exist"):
    oneshot.run_oneshot(TrainConfig.from_dict({"data": {"task": "sst2"}, "run": {"output": "x"}}),
                        {"a": "/nowhere"}, "/tmp/x")
  taken = tmp_path / "a_train_run"
  taken.mkdir()
  (taken / "config.json").write_text("{}")
  with pytest.raises(FlatjaxInputError, match=r"holds another run \(config.json\)"):
    oneshot.run_oneshot(TrainConfig.from_dict({"data": {"task": "sst2"}, "run": {"output": "x"}}),
                        {"a": str(tmp_path)}, taken)
  assert sorted(p.name for p in taken.iterdir()) == ["config.json"]
